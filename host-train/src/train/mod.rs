//! Everything about training that is not the model: losses, optimisers, schedules,
//! checkpoints, the run configuration and the loop itself.
pub mod average;
pub mod checkpoint;
pub mod config;
pub mod evaluate;
pub mod finetune;
pub mod loss;
pub mod optim;
pub mod schedule;
pub mod setup;
pub mod trainer;

pub use config::TrainConfig;
