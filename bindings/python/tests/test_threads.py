"""One model called from several Python threads at once gives the same answers as one
thread (the GIL is released while the engine runs)."""

import threading

import numpy as np

import vgg
from conftest import fixture


def test_two_threads_same_answers():
    model = vgg.load(fixture("forward/tiny_bn.pth"))
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((2, 3, 64, 64)).astype(np.float32) for _ in range(6)]
    want = [model(x) for x in inputs]
    got = {}

    def work(k):
        for i in range(len(inputs)):
            j = (i + k) % len(inputs)
            got[(k, j)] = (model(inputs[j]), model.features(inputs[j], layers=["features.3"]))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 2 * len(inputs)
    for (k, j), (logits, features) in got.items():
        np.testing.assert_array_equal(logits, want[j])
        assert features["features.3"].shape == (2, 8, 32, 32)


def test_loading_weights_while_other_threads_compute_does_not_deadlock():
    model = vgg.load(fixture("forward/tiny_bn.pth"))
    state = model.state_dict()
    x = np.random.default_rng(5).standard_normal((2, 3, 64, 64)).astype(np.float32)
    errors = []

    def compute():
        try:
            for _ in range(20):
                model.features(x, layers=["features.3"])
                model(x)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def load():
        try:
            for _ in range(20):
                model.load_state_dict(state)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=f, daemon=True) for f in (compute, compute, load)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "deadlock"
    assert not errors, errors


def test_thread_count_is_reported():
    assert vgg.get_num_threads() >= 1
    vgg.set_num_threads(vgg.get_num_threads())  # the same size again is fine
