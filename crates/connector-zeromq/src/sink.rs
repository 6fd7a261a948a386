//! ZeroMQ PUSH/PUB sink. "Confirmed" means handed to the socket: ZeroMQ has no acknowledgements.

use anyhow::Context as _;
use async_trait::async_trait;
use tokio::sync::Mutex;
use zeromq::{PubSocket, PushSocket, Socket as _, SocketSend as _, ZmqMessage};

use super::{SinkSocket, ZeroMqSinkConfig};
use sluice_core::connector::{SendResult, Sink};
use sluice_core::message::Output;

enum Sender {
    Push(PushSocket),
    Pub(PubSocket),
}

pub struct ZeroMqSink {
    cfg: ZeroMqSinkConfig,
    socket: Mutex<Option<Sender>>,
}

impl ZeroMqSink {
    pub fn new(cfg: ZeroMqSinkConfig) -> Self {
        ZeroMqSink {
            cfg,
            socket: Mutex::new(None),
        }
    }

    async fn open(&self) -> anyhow::Result<Sender> {
        let endpoint = self.cfg.endpoint.as_str();
        Ok(match self.cfg.socket {
            SinkSocket::Push => {
                let mut s = PushSocket::new();
                super::attach(
                    &mut s,
                    endpoint,
                    self.cfg.bind.unwrap_or(false),
                    "zeromq sink",
                )
                .await?;
                Sender::Push(s)
            }
            SinkSocket::Pub => {
                let mut s = PubSocket::new();
                super::attach(
                    &mut s,
                    endpoint,
                    self.cfg.bind.unwrap_or(true),
                    "zeromq sink",
                )
                .await?;
                Sender::Pub(s)
            }
        })
    }
}

#[async_trait]
impl Sink for ZeroMqSink {
    async fn send(&self, batch: &[Output]) -> SendResult {
        let mut guard = self.socket.lock().await;
        if guard.is_none() {
            *guard = Some(self.open().await?);
        }
        let Some(socket) = guard.as_mut() else {
            return Err(anyhow::anyhow!("zeromq sink: no socket").into());
        };
        for out in batch {
            let result = match socket {
                Sender::Push(s) => s.send(ZmqMessage::from(out.payload.clone())).await,
                Sender::Pub(s) => {
                    let msg = match &out.key {
                        Some(key) => {
                            let mut msg = ZmqMessage::from(out.payload.clone());
                            msg.push_front(key.clone());
                            msg
                        }
                        None => ZmqMessage::from(out.payload.clone()),
                    };
                    s.send(msg).await
                }
            };
            result.context("zeromq sink: send")?;
        }
        Ok(())
    }
}
