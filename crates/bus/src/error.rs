use keyledger_log::Seq;

/// What went wrong talking to NATS or reading the log. Messages never carry credentials (URLs
/// are shown without their user information).
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("JetStream stream {stream}: {reason}")]
    Stream { stream: String, reason: String },
    #[error("publishing event {seq} to {stream} failed: {reason}")]
    Publish {
        stream: String,
        seq: Seq,
        reason: String,
    },
    #[error(
        "stream {stream} stored event {seq} at stream sequence {got}, expected {expected}; the relay resynchronises from the stream"
    )]
    OutOfOrder {
        stream: String,
        seq: Seq,
        expected: u64,
        got: u64,
    },
    #[error(
        "stream {stream} ends at stream sequence {found}, but the relay published through {expected} (the server lost or gained messages); the relay resynchronises from the stream"
    )]
    StreamMoved {
        stream: String,
        expected: u64,
        found: u64,
    },
    #[error(
        "stream {stream} holds events of another log ({detail}); point this vault at its own stream name or delete the stream"
    )]
    ForeignStream { stream: String, detail: String },
    #[error("reading the event log: {0}")]
    Log(String),
    #[error("event {seq} in the log cannot be decoded ({reason}); run `keyledger audit verify`")]
    Decode { seq: Seq, reason: String },
    #[error("consumer {consumer}: {reason}")]
    Consumer { consumer: String, reason: String },
    #[error("message {stream_seq} on {subject} is not a keyledger event: {reason}")]
    Undecodable {
        stream_seq: u64,
        subject: String,
        reason: String,
    },
    #[error("acknowledging message {stream_seq}: {reason}")]
    Ack { stream_seq: u64, reason: String },
    #[error(
        "replication stream is inconsistent at event {seq}: {reason}; the replica stops applying until it is restarted"
    )]
    Replication { seq: Seq, reason: String },
    #[error("{0}")]
    Config(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl From<keyledger_log::LogError> for BusError {
    fn from(error: keyledger_log::LogError) -> Self {
        BusError::Log(error.to_string())
    }
}
