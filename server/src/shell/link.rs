//! The channel ends between the core and a shard. A shard on an executor of its own talks to
//! the core over glommio's shared channels. The shard that runs on the core's executor
//! (`zinc.coreWithShard`) uses local channels: a local channel wakes its receiver within the
//! executor's current turn, while a shared channel's message is seen only when the executor
//! next polls its rings, one more turn of its loop (and one more poll) for every hop a write
//! and its reply make.

use std::rc::Rc;

use glommio::channels::local_channel::{LocalReceiver, LocalSender};
use glommio::channels::shared_channel::{ConnectedReceiver, ConnectedSender};

/// The sending end of a channel to or from the core.
pub(crate) enum Sender<T: Send + 'static> {
    Shared(ConnectedSender<T>),
    Local(Rc<LocalSender<T>>),
}

impl<T: Send + 'static> Sender<T> {
    /// Sends, waiting for room; `false` once the receiver is gone.
    pub(crate) async fn send(&self, message: T) -> bool {
        match self {
            Sender::Shared(sender) => sender.send(message).await.is_ok(),
            Sender::Local(sender) => sender.send(message).await.is_ok(),
        }
    }
}

/// The receiving end of a channel to or from the core.
pub(crate) enum Receiver<T: Send + 'static> {
    Shared(ConnectedReceiver<T>),
    Local(LocalReceiver<T>),
}

impl<T: Send + 'static> Receiver<T> {
    /// The next message; `None` once every sender is gone.
    pub(crate) async fn recv(&self) -> Option<T> {
        match self {
            Receiver::Shared(receiver) => receiver.recv().await,
            Receiver::Local(receiver) => receiver.recv().await,
        }
    }
}
