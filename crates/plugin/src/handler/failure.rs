//! What comes back from a call, judged: outputs checked against the limits, traps and
//! instantiation errors turned into typed failures.

use anyhow::anyhow;
use wasmtime::{Store, Trap};

use crate::convert;
use crate::state::HostState;
use sluice_core::transform::{ErrorClass, Failure, Outcome};

use super::{CallResult, WasmHandler};

impl WasmHandler {
    /// Convert one canonical-ABI result and check it against the output limits.
    pub(super) fn outcome(&self, result: CallResult) -> Outcome {
        self.within_limits(match result {
            Err(e) => Outcome::Failed(convert::failure(e)),
            Ok(outputs) => Outcome::Outputs(outputs.into_iter().map(convert::from_wit).collect()),
        })
    }

    /// Check one message's outputs against `max_outputs` and `max_output_bytes`.
    pub(super) fn within_limits(&self, outcome: Outcome) -> Outcome {
        let limits = &self.plugin.limits;
        let Outcome::Outputs(outputs) = &outcome else {
            return outcome;
        };
        if outputs.len() > limits.max_outputs as usize {
            let reason = format!(
                "{} outputs for one message, the limit is {}",
                outputs.len(),
                limits.max_outputs
            );
            return Outcome::Failed(Failure::new(ErrorClass::OutputLimit, reason));
        }
        let bytes: u64 = outputs.iter().map(|o| o.payload.len() as u64).sum();
        if bytes > limits.max_output_bytes {
            let reason = format!(
                "{bytes} output bytes for one message, the limit is {}",
                limits.max_output_bytes
            );
            return Outcome::Failed(Failure::new(ErrorClass::OutputLimit, reason));
        }
        outcome
    }

    /// Turn a failed call into a typed failure with a reason a person can act on.
    pub(super) fn describe_trap(&self, err: &wasmtime::Error, store: &Store<HostState>) -> Failure {
        let state = store.data();
        let limits = &self.plugin.limits;
        if let Some(desired) = state.limiter.hit {
            let reason = format!(
                "memory limit of {} MiB exceeded (the guest asked for {desired} bytes)",
                limits.memory_mb
            );
            return Failure::new(ErrorClass::MemoryLimit, reason);
        }
        let panic = state
            .last_panic
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default();
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Failure::new(
                ErrorClass::Timeout,
                format!("handler ran past its timeout of {} ms", limits.timeout_ms),
            ),
            Some(Trap::StackOverflow) => Failure::new(
                ErrorClass::Trap,
                format!("stack overflow (stack limit {} KiB)", limits.stack_kb),
            ),
            Some(trap) => Failure::new(ErrorClass::Trap, format!("trap: {trap}{panic}")),
            None => Failure::new(ErrorClass::Trap, format!("trap: {err:#}{panic}")),
        }
    }
}

pub(super) fn cannot_instantiate(e: &anyhow::Error) -> Failure {
    Failure::new(
        ErrorClass::Transient,
        format!("cannot instantiate the plugin: {e:#}"),
    )
}

/// The failure as an error naming its class, once: a trap's reason already starts with
/// `trap: `.
pub(super) fn into_error(failure: Failure) -> anyhow::Error {
    let class = failure.class.to_string();
    match failure.reason.strip_prefix(class.as_str()) {
        Some(rest) if rest.starts_with(": ") => anyhow!("{}", failure.reason),
        _ => anyhow!("{class}: {}", failure.reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn an_error_names_its_failure_class_once() {
        let trap = Failure::new(
            ErrorClass::Trap,
            "trap: wasm trap: unreachable (panic: boom)",
        );
        assert_eq!(
            into_error(trap).to_string(),
            "trap: wasm trap: unreachable (panic: boom)"
        );
        let timeout = Failure::new(ErrorClass::Timeout, "handler ran past its timeout of 5 ms");
        assert_eq!(
            into_error(timeout).to_string(),
            "timeout: handler ran past its timeout of 5 ms"
        );
    }
}
