//! The names of a checkpoint's tensors, in one place. Every module that writes, reads,
//! filters or renames them (the network, the optimiser, the loss, weight averaging,
//! fine-tuning, the torchvision loader, the ONNX export) asks here, so a new kind of
//! tensor is named once.
//!
//! - the body: torchvision's names at the root (`conv1.weight`, `layer1.0.bn1.running_mean`,
//!   `layer2.0.downsample.0.weight`), so a torchvision state dict maps one to one;
//! - head `h`: under `heads.<h>` (`heads.<h>.0` and `heads.<h>.2`, two Linear layers);
//! - the loss's learned weights: under `loss`;
//! - the optimiser's state: `optim.m.<var>` and `optim.v.<var>` (AdamW's moments).

/// Where the heads live.
pub const HEADS: &str = "heads";
/// Where the loss's learned weights live.
pub const LOSS: &str = "loss";
const OPTIM: &str = "optim.";

/// The prefix of head `name`'s tensors and graph nodes (`heads.age`).
pub fn head(name: &str) -> String {
    format!("{HEADS}.{name}")
}

/// `heads.age.`: what every tensor of head `name` starts with.
pub fn head_prefix(name: &str) -> String {
    format!("{HEADS}.{name}.")
}

/// A tensor of some head.
pub fn is_head_var(name: &str) -> bool {
    name.strip_prefix(HEADS).is_some_and(|r| r.starts_with('.'))
}

/// A learned weight of the loss rather than of the network.
pub fn is_loss_var(name: &str) -> bool {
    name.strip_prefix(LOSS).is_some_and(|r| r.starts_with('.'))
}

/// The optimiser's state (it belongs to one run: averaging and new runs drop it).
pub fn is_optim_state(name: &str) -> bool {
    name.starts_with(OPTIM)
}

/// The optimiser's first moment of variable `var`.
pub fn optim_m(var: &str) -> String {
    format!("{OPTIM}m.{var}")
}

/// The optimiser's second moment of variable `var`.
pub fn optim_v(var: &str) -> String {
    format!("{OPTIM}v.{var}")
}

/// A variable of the body: not a head's, not the loss's, not optimiser state.
pub fn is_body_var(name: &str) -> bool {
    !is_head_var(name) && !is_loss_var(name) && !is_optim_state(name)
}

/// A BatchNorm running statistic (recomputed, not averaged, by weight averaging).
pub fn is_running_stat(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
}

/// What a torchvision ResNet state dict has that the body never takes (the ImageNet
/// classifier `fc.*`, BatchNorm's `num_batches_tracked`), and a HydraNet checkpoint's
/// optimiser and loss state (a new run starts its own).
pub fn is_torchvision_extra(name: &str) -> bool {
    name.starts_with("fc.")
        || name.ends_with(".num_batches_tracked")
        || is_optim_state(name)
        || is_loss_var(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tensor_has_one_owner() {
        let heads = ["heads.age.0.weight", "heads.gender.2.bias"];
        let body = [
            "conv1.weight",
            "layer1.0.bn1.running_mean",
            "layer2.0.downsample.0.weight",
        ];
        for n in heads {
            assert!(is_head_var(n) && !is_body_var(n) && !is_loss_var(n), "{n}");
        }
        for n in body {
            assert!(is_body_var(n) && !is_head_var(n), "{n}");
        }
        assert!(is_loss_var("loss.log_var") && !is_body_var("loss.log_var"));
        assert!(!is_loss_var("lossy.weight") && !is_head_var("headsup.weight"));
        assert!(is_optim_state(&optim_m("conv1.weight")));
        assert_eq!(optim_v("conv1.weight"), "optim.v.conv1.weight");
        assert!(head_prefix("age").starts_with(&head("age")));
        assert!(is_running_stat("bn1.running_var") && !is_running_stat("bn1.weight"));
        assert!(
            is_torchvision_extra("fc.weight") && is_torchvision_extra("bn1.num_batches_tracked")
        );
    }
}
