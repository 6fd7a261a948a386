//! ZeroMQ PULL/SUB source. Nothing to acknowledge: see the module docs.

use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use futures::FutureExt as _;
use zeromq::{PullSocket, Socket as _, SocketRecv as _, SubSocket, ZmqMessage};

use super::{SourceSocket, ZeroMqSourceConfig};
use sluice_core::ack::AckToken;
use sluice_core::connector::{Delivery, Source};
use sluice_core::message::{Message, Metadata};

enum Receiver {
    Pull(PullSocket),
    Sub(SubSocket),
}

impl Receiver {
    async fn recv(&mut self) -> zeromq::ZmqResult<ZmqMessage> {
        match self {
            Receiver::Pull(s) => s.recv().await,
            Receiver::Sub(s) => s.recv().await,
        }
    }
}

pub struct ZeroMqSource {
    cfg: ZeroMqSourceConfig,
    socket: Option<Receiver>,
    source: Arc<str>,
    topic: Arc<str>,
    seq: i64,
}

impl ZeroMqSource {
    pub fn new(cfg: ZeroMqSourceConfig) -> Self {
        let topic = Arc::from(cfg.endpoint.as_str());
        ZeroMqSource {
            cfg,
            socket: None,
            source: Arc::from("zeromq"),
            topic,
            seq: 0,
        }
    }

    async fn open(&self) -> anyhow::Result<Receiver> {
        let endpoint = self.cfg.endpoint.as_str();
        Ok(match self.cfg.socket {
            SourceSocket::Pull => {
                let mut s = PullSocket::new();
                super::attach(
                    &mut s,
                    endpoint,
                    self.cfg.bind.unwrap_or(true),
                    "zeromq source",
                )
                .await?;
                Receiver::Pull(s)
            }
            SourceSocket::Sub => {
                let mut s = SubSocket::new();
                super::attach(
                    &mut s,
                    endpoint,
                    self.cfg.bind.unwrap_or(false),
                    "zeromq source",
                )
                .await?;
                for topic in self
                    .cfg
                    .topics
                    .clone()
                    .unwrap_or_else(|| vec![String::new()])
                {
                    s.subscribe(&topic)
                        .await
                        .context("zeromq source: subscribe")?;
                }
                Receiver::Sub(s)
            }
        })
    }

    fn delivery(&mut self, msg: ZmqMessage) -> Delivery {
        let mut frames = msg.into_vec();
        let payload = frames.pop().unwrap_or_default();
        let key = if frames.is_empty() {
            None
        } else {
            Some(frames.swap_remove(0))
        };
        self.seq += 1;
        let mut meta = Metadata::received_now(self.source.clone(), self.topic.clone());
        meta.offset = Some(self.seq);
        let message = Message {
            id: format!("{}:{}", self.topic, self.seq),
            key,
            payload,
            headers: Vec::new(),
            meta,
        };
        Delivery::new(message, AckToken::none())
    }
}

#[async_trait]
impl Source for ZeroMqSource {
    async fn next_batch(&mut self, max: usize) -> anyhow::Result<Option<Vec<Delivery>>> {
        if self.socket.is_none() {
            self.socket = Some(self.open().await?);
        }
        let Some(socket) = self.socket.as_mut() else {
            anyhow::bail!("zeromq source: no socket")
        };
        let first = socket.recv().await.context("zeromq source: receive")?;
        let mut raw = vec![first];
        while raw.len() < max {
            match socket.recv().now_or_never() {
                Some(Ok(m)) => raw.push(m),
                _ => break,
            }
        }
        Ok(Some(raw.into_iter().map(|m| self.delivery(m)).collect()))
    }
}
