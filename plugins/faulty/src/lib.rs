//! `faulty`: a test plugin that misbehaves on request, so the host's defences can be tested.
//! The payload says what to do; anything else is echoed unchanged.
//!
//! | payload          | behaviour                                             |
//! |------------------|-------------------------------------------------------|
//! | `trap`           | panics (a trap, with the panic message logged)        |
//! | `loop`           | loops forever (the host's timeout stops it)           |
//! | `bomb`           | allocates until the memory cap stops it               |
//! | `stack`          | recurses until the stack cap stops it                 |
//! | `huge`           | returns one 8 MiB output                              |
//! | `many`           | returns 5000 outputs                                  |
//! | `slow:N`         | spins N million iterations, then echoes               |
//! | `transient`      | always fails with `transient`                         |
//! | `transient-until:N` | `transient` until delivery attempt N, then echoes  |
//! | `fatal`, `invalid` | fails with that class                               |
//! | `filter`         | produces no output                                    |
//! | `route:NAME`     | echoes to the sink called NAME                        |
//! | `traced`         | logs the `traceparent` it sees (an event on its span), echoes |
//! | `rewrite-headers` | echoes with each header rewritten: text upper-cased, bytes reversed, null kept (contract 0.2's binary values, read and written) |

use sluice_sdk::{Handler, HandlerError, HeaderValue, Message, Output, export_handler};

struct Faulty;

/// Recursion whose frames live on the WebAssembly stack (locals only, nothing in linear memory),
/// so it is the host's `stack_kb` cap that stops it.
fn recurse(depth: u64) -> u64 {
    if std::hint::black_box(depth) == u64::MAX {
        0
    } else {
        recurse(depth + 1).wrapping_add(depth)
    }
}

impl Handler for Faulty {
    fn handle(msg: Message) -> Result<Vec<Output>, HandlerError> {
        let text = String::from_utf8_lossy(&msg.payload).into_owned();
        let echo = || {
            Ok(vec![Output {
                payload: msg.payload.clone(),
                key: msg.key.clone(),
                headers: msg.headers.clone(),
                route: None,
            }])
        };
        match text.as_str() {
            "trap" => panic!("asked to trap by message {}", msg.id),
            "loop" => loop {
                std::hint::black_box(&text);
            },
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "stack" => Ok(vec![Output::from_payload(recurse(0).to_string())]),
            "huge" => Ok(vec![Output::from_payload(vec![b'x'; 8 << 20])]),
            "many" => Ok((0..5000)
                .map(|i| Output::from_payload(i.to_string()))
                .collect()),
            "transient" => Err(HandlerError::Transient("dependency unavailable".into())),
            "fatal" => Err(HandlerError::Fatal("cannot ever handle this".into())),
            "invalid" => Err(HandlerError::Invalid("payload is malformed".into())),
            "filter" => Ok(Vec::new()),
            "rewrite-headers" => Ok(vec![Output {
                payload: msg.payload.clone(),
                key: msg.key.clone(),
                headers: msg
                    .headers
                    .iter()
                    .map(|(name, value)| {
                        let value = match value {
                            HeaderValue::Text(text) => HeaderValue::Text(text.to_uppercase()),
                            HeaderValue::Bytes(bytes) => {
                                HeaderValue::Bytes(bytes.iter().rev().copied().collect())
                            }
                            HeaderValue::Null => HeaderValue::Null,
                        };
                        (name.clone(), value)
                    })
                    .collect(),
                route: None,
            }]),
            "traced" => {
                let parent = msg.header("traceparent").unwrap_or("none");
                sluice_sdk::log(
                    sluice_sdk::Level::Info,
                    &format!("saw traceparent {parent}"),
                );
                echo()
            }
            _ => {
                if let Some(n) = text
                    .strip_prefix("slow:")
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    let mut x = 0u64;
                    for i in 0..n * 1_000_000 {
                        x = std::hint::black_box(x.wrapping_add(i));
                    }
                    return echo();
                }
                if let Some(n) = text
                    .strip_prefix("transient-until:")
                    .and_then(|n| n.parse::<u32>().ok())
                {
                    return if msg.metadata.attempt < n {
                        Err(HandlerError::Transient(format!(
                            "attempt {} of {n}",
                            msg.metadata.attempt
                        )))
                    } else {
                        echo()
                    };
                }
                if let Some(route) = text.strip_prefix("route:") {
                    return Ok(vec![
                        Output::from_payload(msg.payload.clone()).with_route(route),
                    ]);
                }
                echo()
            }
        }
    }
}

export_handler!(Faulty);
