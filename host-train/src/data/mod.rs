//! The input pipeline: decode once in parallel, keep u8 pixels at the training size,
//! augment and normalise per batch.
pub mod augment;
pub mod batch;
pub mod cache;
pub mod cache_file;

pub use augment::AugmentConfig;
pub use batch::{Batch, Batcher};
pub use cache::{CacheMode, CachePolicy, ImageCache};
