"""Bad input raises Python exceptions with the library's messages; nothing takes the
interpreter down."""

import io

import numpy as np
import pytest

import vgg
from conftest import fixture


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        vgg.load(tmp_path / "nothing.pth")


def test_missing_images_are_file_not_found(tmp_path, tiny_bn):
    with pytest.raises(FileNotFoundError, match="nothing.jpg"):
        vgg.preprocess(tmp_path / "nothing.jpg")
    with pytest.raises(FileNotFoundError):
        tiny_bn.classify([str(tmp_path / "nothing.jpg")])


def test_a_model_summarised_at_other_channels_is_an_error():
    with pytest.raises(ValueError, match="expects 3 input channels, got 1"):
        vgg.summary(vgg.models.custom([8, "M"], hidden=8), (1, 32, 32))


def test_not_a_checkpoint_is_a_weights_error(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    with pytest.raises(vgg.WeightsError, match="notes.pth"):
        vgg.load(path)
    assert issubclass(vgg.WeightsError, ValueError)


def test_a_checkpoint_of_another_arch_is_a_weights_error():
    with pytest.raises(vgg.WeightsError, match="does not fit vgg11"):
        vgg.models.vgg11(weights=fixture("forward/tiny_bn.pth"))


def test_bad_shapes_and_arguments_are_value_errors(tiny_bn):
    with pytest.raises(ValueError, match="NCHW"):
        tiny_bn(np.zeros((3, 64, 64), np.float32))
    with pytest.raises(ValueError, match="the batch is empty"):
        tiny_bn(np.zeros((0, 3, 64, 64), np.float32))
    with pytest.raises(ValueError, match="needs at least 32"):
        tiny_bn(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match="expects 3 input channels"):
        tiny_bn(np.zeros((1, 1, 64, 64), np.float32))
    with pytest.raises(ValueError, match="features.99"):
        tiny_bn.features(np.zeros((1, 3, 64, 64), np.float32), layers=["features.99"])
    with pytest.raises(ValueError, match="unknown arch"):
        vgg.Model.open("vgg12")
    with pytest.raises(ValueError, match="needs cfg"):
        vgg.Model.open("custom")
    with pytest.raises(ValueError, match="dropout"):
        vgg.models.vgg11(dropout=1.5)
    with pytest.raises(ValueError, match="num_classes must be at least 1"):
        vgg.models.custom([8, "M"], num_classes=0)
    with pytest.raises(ValueError, match="convolution"):
        vgg.models.custom(["M"])


def test_non_finite_inputs_are_value_errors(tiny_bn):
    x = np.zeros((1, 3, 64, 64), np.float32)
    x[0, 1, 2, 3] = np.inf
    with pytest.raises(ValueError, match="inf at element"):
        tiny_bn(x)
    with pytest.raises(ValueError, match="inputs must be finite"):
        tiny_bn.features(x, layers=["features.3"])


def test_help_explains_the_arguments():
    assert "input_size" in vgg.summary.__doc__ and "torchsummary" in vgg.summary.__doc__
    assert "weights" in vgg.models.vgg16.__doc__



def test_requests_over_the_memory_budget_are_memory_errors():
    model = vgg.models.custom([8, "M"], hidden=8, pool=1)
    x = np.zeros((1, 3, 64, 64), np.float32)
    try:
        vgg.set_memory_limit("1K")
        assert vgg.get_memory_limit() == 1024
        with pytest.raises(MemoryError, match="would need .* over the memory budget of 1.0 KiB"):
            model(x)
    finally:
        vgg.set_memory_limit(None)
    assert vgg.get_memory_limit() > 1 << 20
    assert model(x).shape == (1, 1000)
    with pytest.raises(ValueError, match="bad memory size `lots`"):
        vgg.set_memory_limit("lots")


def test_non_finite_weights_and_negative_variances_are_weights_errors(tiny_bn):
    state = {k: np.array(v) for k, v in tiny_bn.state_dict().items()}
    key = next(k for k in state if k.endswith(".weight"))
    state[key].flat[2] = np.nan
    with pytest.raises(vgg.WeightsError, match=f"`{key}` holds NaN at element 2"):
        tiny_bn.load_state_dict(state)
    state = {k: np.array(v) for k, v in tiny_bn.state_dict().items()}
    key = next(k for k in state if k.endswith(".running_var"))
    state[key].flat[1] = -0.5
    with pytest.raises(vgg.WeightsError, match=f"`{key}` holds -0.5 at element 1"):
        tiny_bn.load_state_dict(state)


def test_image_arrays_must_be_uint8(tiny_bn):
    image = np.full((40, 40, 3), 0.5, np.float32)
    with pytest.raises(TypeError, match="an image array must be uint8 .* got float32"):
        vgg.preprocess([image], resize=32, crop=32)
    with pytest.raises(TypeError, match="got int64"):
        tiny_bn.classify([np.full((40, 40, 3), 300)], resize=32, crop=32)
    with pytest.raises(TypeError, match="images are paths, PIL images or HxWx3 uint8 arrays, got NoneType"):
        tiny_bn.classify([None])


def test_many_images_are_refused_by_the_memory_budget(tiny_bn):
    images = [np.zeros((1, 1, 3), np.uint8)] * 1000
    try:
        vgg.set_memory_limit("1M")
        with pytest.raises(MemoryError, match="1000 images preprocessed at 64x64"):
            vgg.preprocess(images, resize=64, crop=64)
        with pytest.raises(MemoryError, match="1000 images preprocessed at 32x32"):
            tiny_bn.calibrate(images, resize=32, crop=32)
    finally:
        vgg.set_memory_limit(None)


def test_config_dicts_and_heads_are_checked():
    with pytest.raises(ValueError, match="unknown config key `num_clases`"):
        vgg.summary({"cfg": [8, "M"], "num_clases": 4}, (3, 32, 32))
    with pytest.raises(ValueError, match="disagree"):
        vgg.models.custom([8, "M"], head="8,4", hidden=16)
    with pytest.raises(ValueError, match="has none"):
        vgg.models.custom([8, "M"], head="8,relu,4", dropout=0.3)


def test_memory_limits_of_the_wrong_kind_are_named():
    try:
        for bad in (-1, 0, 2**64, float("nan"), "0"):
            with pytest.raises(ValueError, match="memory"):
                vgg.set_memory_limit(bad)
        with pytest.raises(TypeError, match="got a bool"):
            vgg.set_memory_limit(True)
        with pytest.raises(TypeError, match="got list"):
            vgg.set_memory_limit([1])
        vgg.set_memory_limit(4e9)
        assert vgg.get_memory_limit() == 4_000_000_000
    finally:
        vgg.set_memory_limit(None)


def test_images_into_a_network_without_three_channels_are_refused():
    grey = vgg.models.custom([8, "M"], hidden=8, num_classes=3, in_channels=1)
    image = np.zeros((40, 40, 3), np.uint8)
    for call in (lambda: grey.classify([image], resize=32, crop=32),
                 lambda: grey.calibrate([image], resize=32, crop=32)):
        with pytest.raises(ValueError, match="images decode to 3 channels .* takes 1"):
            call()


def test_empty_and_degenerate_requests_are_refused(tmp_path, tiny_bn):
    with pytest.raises(ValueError, match="at least one model"):
        vgg.diagram([])
    with pytest.raises(ValueError, match="batch of 0 images"):
        tiny_bn.to_onnx(tmp_path / "m.onnx", input_shape=(0, 3, 64, 64))
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(ValueError, match="empty path"):
        vgg.dissect(tiny_bn, np.zeros((64, 64, 3), np.uint8)).save("")
    # A 5000-item config's error stays one readable line.
    with pytest.raises(ValueError) as error:
        vgg.models.custom([0] * 5000)
    assert len(str(error.value)) <= 1001 and "\n" not in str(error.value)


def test_huge_arrays_are_refused_before_they_are_copied(tiny_bn):
    # A broadcast view takes no memory; converting it would take 112 GiB.
    x = np.broadcast_to(np.float32(0), (1, 3, 100000, 100000))
    with pytest.raises(MemoryError, match=r"an input array of shape \[1, 3, 100000, 100000\]"):
        tiny_bn(x)
    with pytest.raises(ValueError, match="NCHW"):
        tiny_bn(np.broadcast_to(np.float32(0), (3, 100000, 100000)))


def test_messages_name_python_arguments_not_command_line_flags(tiny_bn):
    image = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(ValueError, match="resize and crop must be at least 1") as error:
        tiny_bn.classify([image], crop=0)
    assert "--" not in str(error.value)
    with pytest.raises(ValueError, match="^bad cfg") as error:
        vgg.models.custom([8, "X"])
    with pytest.raises(ValueError, match="scales") as error:
        tiny_bn.classify([image], protocol="dense", scales=[])
    assert "--" not in str(error.value)


def test_text_is_not_split_into_characters():
    # "64" as a cfg is one 64-channel layer, never the layers 6 and 4.
    as_text = vgg.models.custom("64,M", hidden=8, num_classes=2)
    as_list = vgg.models.custom([64, "M"], hidden=8, num_classes=2)
    tables = [vgg.summary(m, (3, 32, 32), file=io.StringIO()).text for m in (as_text, as_list)]
    assert tables[0] == tables[1]
    summary = vgg.summary({"cfg": "16,M", "hidden": 8}, (3, 32, 32), file=io.StringIO())
    assert "[-1, 16, 32, 32]" in summary.text
    for call in (lambda: vgg.summary("vgg11", "332"), lambda: vgg.compare("3,32,32")):
        with pytest.raises(TypeError, match="got '"):
            call()
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="expected three values .* got 1"):
        vgg.preprocess(image, resize=8, crop=8, mean="0.5")
    as_text = vgg.preprocess(image, resize=8, crop=8, mean="0.5,0.5,0.5")
    assert np.array_equal(as_text, vgg.preprocess(image, resize=8, crop=8, mean=[0.5] * 3))


def test_odd_arguments_get_python_answers(tmp_path, tiny_bn):
    with pytest.raises(TypeError, match="got bytes"):
        vgg.models.custom(b"8,M")
    with pytest.raises(TypeError, match="got bytes"):
        vgg.models.custom([8, "M"], head=b"4,2")
    for bad in (None, 1.0, "x"):
        with pytest.raises(TypeError, match="got"):
            tiny_bn(bad)
    state = tiny_bn.state_dict()
    state["features.0.weight"] = None
    with pytest.raises(TypeError, match=r"state_dict\['features.0.weight'\] must be an array of numbers"):
        tiny_bn.load_state_dict(state)
    with pytest.raises(TypeError, match="three ints"):
        vgg.summary("vgg11", (3.9, 32.7, 32), file=io.StringIO())
    with pytest.raises(ValueError, match="one image, got 2"):
        vgg.dissect(tiny_bn, [np.zeros((64, 64, 3), np.uint8)] * 2)
    with pytest.raises(ValueError, match="whole number of bytes, got 1.5"):
        vgg.set_memory_limit(1.5)
    with pytest.raises(ValueError, match="beyond a 64-bit count"):
        vgg.set_memory_limit(2**64)
    with pytest.raises(ValueError, match="finite"):
        vgg.preprocess(np.zeros((8, 8, 3), np.uint8), resize=8, crop=8, mean=(float("inf"), 0, 0))
    with pytest.raises(ValueError, match="beyond float32's range"):
        vgg.preprocess(np.zeros((8, 8, 3), np.uint8), resize=8, crop=8, std=(1e-45, 1, 1))
    with pytest.raises(ValueError, match=r"a.txt: expected a \.svg or \.png") as error:
        vgg.diagram("vgg11").save(tmp_path / "a.txt")
    assert "--out" not in str(error.value)


def test_one_name_or_image_is_taken_whole(tiny_bn):
    x = np.zeros((1, 3, 64, 64), np.float32)
    one = tiny_bn.features(x, "features.3")
    assert list(one) == ["features.3"]
    table = vgg.summary(tiny_bn, (3, 64, 64), format="torchinfo", columns="output_size", frozen="features",
                        file=io.StringIO())
    assert "Output Shape" in table.text and "Param #" not in table.text
    image = np.zeros((64, 64, 3), np.uint8)
    assert tiny_bn.classify(image, resize=64, crop=64) == tiny_bn.classify([image], resize=64, crop=64)
    assert tiny_bn.classify((image, image), resize=64, crop=64) == tiny_bn.classify([image] * 2, resize=64, crop=64)


def test_python_spelling_of_hints_and_errors(tiny_bn):
    with pytest.raises(vgg.WeightsError) as error:
        vgg.models.vgg11(weights=fixture("forward/tiny_bn.pth"))
    message = str(error.value)
    assert "vgg.models.custom cfg=" in message and "vgg.load(path)" in message and "--" not in message
    with pytest.raises(ValueError, match="give weights, or name an arch"):
        vgg.Model.open("auto")
    with pytest.raises(ValueError, match="give weights ") as error:
        vgg.Model.open("vgg11", precision="int8")
    assert "--" not in str(error.value)
    with pytest.raises(ValueError, match="custom needs at least 32×32 input"):
        tiny_bn.calibrate([np.zeros((64, 64, 3), np.uint8)], resize=16, crop=16)


def test_a_checkpoint_that_is_not_a_vgg_is_a_weights_error_naming_it():
    path = fixture("pth/tiny_zip.pth")
    with pytest.raises(vgg.WeightsError, match="tiny_zip.pth: cannot detect the arch"):
        vgg.load(path)


def test_weights_errors_pickle_as_vgg_weights_error():
    import pickle

    with pytest.raises(vgg.WeightsError) as error:
        vgg.load(fixture("pth/tiny_zip.pth"))
    again = pickle.loads(pickle.dumps(error.value))
    assert type(again) is vgg.WeightsError and str(again) == str(error.value)
    assert vgg.WeightsError.__module__ == "vgg"


def test_mean_and_std_take_text_everywhere(tiny_bn):
    image = np.zeros((40, 40, 3), np.uint8)
    as_text = tiny_bn.classify([image], resize=32, crop=32, mean="0.5,0.5,0.5", std="0.25, 0.25, 0.25")
    as_list = tiny_bn.classify([image], resize=32, crop=32, mean=[0.5] * 3, std=(0.25,) * 3)
    assert as_text == as_list
    with pytest.raises(ValueError, match="expected three values .* got 2"):
        tiny_bn.classify([image], resize=32, crop=32, mean="0.5,0.5")
    with pytest.raises(ValueError, match="their text, got 'a,b,c'"):
        tiny_bn.calibrate([image], resize=32, crop=32, std="a,b,c")
