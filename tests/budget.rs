//! The memory budget counts what compiled engines hold while they live: a third model whose
//! pass would fit the budget alone, but not beside two that stay alive, is refused with an
//! error (not aborted in the allocator), and fits once one of them is dropped. Alone in its
//! process: the budget and the held total are process-wide.

use vgg::fast::FastVgg;
use vgg::limits::set_memory_budget;
use vgg::model::Vgg;
use vgg::model::config::VggConfig;
use vgg::model::footprint::{Work, estimate};

#[test]
fn live_engines_count_against_the_budget() {
    let config = VggConfig::custom("8,M,16,M", false)
        .unwrap()
        .with_overrides(&vgg::ConfigOverrides {
            hidden: Some(16),
            num_classes: Some(4),
            ..Default::default()
        })
        .unwrap();
    let model = Vgg::with_init(
        config.clone(),
        Default::default(),
        0,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let input = [2, 3, 64, 64];
    let one = estimate(&config, input, Work::Inference).unwrap().unwrap();
    set_memory_budget(Some(one * 5 / 2)).unwrap();
    let compile = || FastVgg::from_model(&model, input, vgg::engine::PlanOptions::default());
    let first = compile().unwrap();
    let second = compile().unwrap();
    let err = compile()
        .err()
        .expect("a third engine is over the budget")
        .to_string();
    assert!(err.contains("compiled models still alive hold"), "{err}");
    drop(first);
    let third = compile().unwrap();
    drop((second, third));
    set_memory_budget(None).unwrap();
}
