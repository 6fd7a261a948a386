//! What comes back from a call, judged: outputs checked against the limits, traps and
//! instantiation errors turned into typed failures.

use anyhow::anyhow;
use wasmtime::{Store, Trap};

use crate::guard;
use crate::settings::Limits;
use crate::state::HostState;
use sluice_core::message::Output;
use sluice_core::transform::{ErrorClass, Failure, Outcome};

use super::HandlerCore;

impl HandlerCore {
    /// Check one message's outputs against the output limits (count, payload bytes, key,
    /// headers, route), and cut a failure's reason to `max_reason_bytes`.
    pub(super) fn within_limits(&self, outcome: Outcome) -> Outcome {
        let limits = &self.plugin.limits;
        let outputs = match outcome {
            Outcome::Failed(mut failure) => {
                failure.reason = guard::cut(&failure.reason, limits.max_reason_bytes as usize);
                return Outcome::Failed(failure);
            }
            Outcome::Outputs(outputs) => outputs,
        };
        match over_limits(&outputs, limits) {
            Some(reason) => Outcome::Failed(Failure::new(ErrorClass::OutputLimit, reason)),
            None => Outcome::Outputs(outputs),
        }
    }

    /// Turn a failed call into a typed failure with a reason a person can act on.
    pub(super) fn describe_trap(&self, err: &wasmtime::Error, store: &Store<HostState>) -> Failure {
        let state = store.data();
        let limits = &self.plugin.limits;
        if let Some(desired) = state.limiter.hit {
            let reason = format!(
                "memory limit of {} MiB exceeded (the instance's memories and tables would hold {desired} bytes)",
                limits.memory_mb
            );
            return Failure::new(ErrorClass::MemoryLimit, reason);
        }
        let panic = state
            .last_panic
            .as_deref()
            .map(|p| format!(" ({})", guard::cut(p, limits.max_reason_bytes as usize)))
            .unwrap_or_default();
        let out_of_fuel = err.chain().any(|e| {
            e.to_string()
                .contains("fuel allocated for hostcalls has been exhausted")
        });
        if out_of_fuel {
            return Failure::new(
                ErrorClass::OutputLimit,
                "the handler returned more than its output limits allow (wasmtime refused to copy it)",
            );
        }
        let cut = |f: Failure| Failure {
            reason: guard::cut(&f.reason, limits.max_reason_bytes as usize),
            ..f
        };
        cut(match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Failure::new(
                ErrorClass::Timeout,
                format!("handler ran past its timeout of {} ms", limits.timeout_ms),
            ),
            Some(Trap::StackOverflow) => Failure::new(
                ErrorClass::Trap,
                format!("stack overflow (stack limit {} KiB)", limits.stack_kb),
            ),
            Some(trap) => Failure::new(ErrorClass::Trap, format!("trap: {trap}{panic}")),
            None => Failure::new(
                ErrorClass::Trap,
                format!("trap: {}{panic}", first_lines(err)),
            ),
        })
    }
}

/// Why `outputs` break `limits`, if they do.
fn over_limits(outputs: &[Output], limits: &Limits) -> Option<String> {
    if let Some(reason) = limits.outputs_over(outputs.len()) {
        return Some(reason);
    }
    let bytes: u64 = outputs.iter().map(|o| o.payload.len() as u64).sum();
    if bytes > limits.max_output_bytes {
        return Some(format!(
            "{bytes} output bytes for one message, the limit is {}",
            limits.max_output_bytes
        ));
    }
    for (i, o) in outputs.iter().enumerate() {
        let key = o.key.as_ref().map_or(0, |k| k.len() as u64);
        if key > limits.max_key_bytes {
            return Some(format!(
                "output {i} has a key of {key} bytes, the limit is {}",
                limits.max_key_bytes
            ));
        }
        let header_bytes: u64 = o
            .headers
            .iter()
            .map(|(n, v)| (n.len() + v.bytes().map_or(0, <[u8]>::len)) as u64)
            .sum();
        if let Some(reason) = limits.headers_over(i, o.headers.len(), header_bytes) {
            return Some(reason);
        }
        if let Some(route) = &o.route
            && route.len() > guard::MAX_ROUTE_BYTES
        {
            return Some(format!(
                "output {i} names a route of {} bytes, the limit is {}",
                route.len(),
                guard::MAX_ROUTE_BYTES
            ));
        }
    }
    None
}

/// The error's messages, outermost first, each at most 1 KiB, all at most 4 KiB (the engines
/// capture no wasm backtrace, whose function names a guest would choose).
fn first_lines(err: &wasmtime::Error) -> String {
    let messages: Vec<String> = err
        .chain()
        .map(|e| guard::cut(&e.to_string(), 1024))
        .collect();
    guard::cut(&messages.join(": "), 4096)
}

pub(super) fn cannot_instantiate(e: &anyhow::Error) -> Failure {
    Failure::new(
        ErrorClass::Transient,
        guard::cut(&format!("cannot instantiate the plugin: {e:#}"), 4096),
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
