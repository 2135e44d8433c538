//! Just enough of the Redis protocol (RESP) for tests to talk to a Redis server.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

/// A whole reply of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Status(String),
    /// `-NOAUTH Authentication required.`
    Error(String),
    Integer(i64),
    /// A string, decoded lossily as UTF-8; `None` for a null reply.
    Bulk(Option<String>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The text of a status, error or string reply.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Status(text) | Self::Error(text) | Self::Bulk(Some(text)) => Some(text),
            _ => None,
        }
    }
}

/// A connection to a Redis server.
#[derive(Debug)]
pub struct Connection {
    stream: BufReader<TcpStream>,
}

impl Connection {
    pub async fn open(address: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            stream: BufReader::new(TcpStream::connect(address).await?),
        })
    }

    /// Sends one command and reads its whole reply.
    pub async fn call(&mut self, arguments: &[&str]) -> std::io::Result<Reply> {
        self.send(arguments).await?;
        self.reply().await
    }

    async fn send(&mut self, arguments: &[&str]) -> std::io::Result<()> {
        let mut request = format!("*{}\r\n", arguments.len());
        for argument in arguments {
            request.push_str(&format!("${}\r\n{argument}\r\n", argument.len()));
        }
        self.stream.get_mut().write_all(request.as_bytes()).await
    }

    async fn line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    /// One reply, with the replies it holds.
    fn reply(&mut self) -> Pin<Box<dyn Future<Output = std::io::Result<Reply>> + Send + '_>> {
        Box::pin(async move {
            let line = self.line().await?;
            let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, line.clone());
            let (kind, rest) = line.split_at_checked(1).ok_or_else(invalid)?;
            let length = || rest.parse::<i64>().map_err(|_| invalid());
            Ok(match kind {
                "+" => Reply::Status(rest.to_owned()),
                "-" => Reply::Error(rest.to_owned()),
                ":" => Reply::Integer(length()?),
                "$" => match usize::try_from(length()?) {
                    Err(_) => Reply::Bulk(None),
                    Ok(length) => {
                        let mut bytes = vec![0; length + 2];
                        self.stream.read_exact(&mut bytes).await?;
                        bytes.truncate(length);
                        Reply::Bulk(Some(String::from_utf8_lossy(&bytes).into_owned()))
                    }
                },
                "*" => match usize::try_from(length()?) {
                    Err(_) => Reply::Array(None),
                    Ok(count) => {
                        let mut items = Vec::with_capacity(count);
                        for _ in 0..count {
                            items.push(self.reply().await?);
                        }
                        Reply::Array(Some(items))
                    }
                },
                _ => return Err(invalid()),
            })
        })
    }

    /// Sends one command and returns the first line of the reply, such as `+PONG`,
    /// `-NOAUTH Authentication required.` or `$5` (the length of a bulk string).
    /// The rest of a reply of several lines is left unread: use [`Connection::call`] for those.
    pub async fn command(&mut self, arguments: &[&str]) -> std::io::Result<String> {
        self.send(arguments).await?;
        self.line().await
    }
}

/// Opens a connection, sends one command and returns the first line of the reply.
pub async fn command(address: SocketAddr, arguments: &[&str]) -> std::io::Result<String> {
    Connection::open(address).await?.command(arguments).await
}
