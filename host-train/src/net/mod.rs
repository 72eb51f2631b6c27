//! Candle networks: the ResNet body and the HydraNet that puts the contract's heads on it.
pub mod hydra;
pub mod init;
pub mod pretrained;
pub mod resnet;
pub mod tap;

pub use hydra::HydraNet;
pub use resnet::{BackboneConfig, BN_EPS, BN_MOMENTUM};
pub use tap::{NoTap, Tap};
