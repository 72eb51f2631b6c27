//! Everything about training that is not the model: the run configuration ([`config`]),
//! the data and network set-up ([`setup`]), losses ([`loss`]), optimisers ([`optim`]),
//! learning-rate schedules ([`schedule`]), checkpoints ([`checkpoint`]), the run log
//! ([`log`]), validation ([`evaluate`]), the loop itself ([`trainer`]), and the two ways of
//! making a model from trained ones: fine-tuning a head ([`finetune`]) and weight
//! averaging ([`average`]); [`unfold`] lets an exported model train again.
pub mod average;
pub mod checkpoint;
pub mod config;
pub mod evaluate;
pub mod finetune;
pub mod log;
pub mod loss;
pub mod optim;
pub mod schedule;
pub mod setup;
pub mod trainer;
pub mod unfold;

pub use config::TrainConfig;
