//! Just enough of the Redis protocol (RESP) for tests to talk to a Redis server.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

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

    /// Sends one command and returns the first line of the reply, such as `+PONG`,
    /// `-NOAUTH Authentication required.` or `$5` (the length of a bulk string).
    pub async fn command(&mut self, arguments: &[&str]) -> std::io::Result<String> {
        let mut request = format!("*{}\r\n", arguments.len());
        for argument in arguments {
            request.push_str(&format!("${}\r\n{argument}\r\n", argument.len()));
        }
        self.stream.get_mut().write_all(request.as_bytes()).await?;
        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end().to_owned())
    }
}

/// Opens a connection, sends one command and returns the first line of the reply.
pub async fn command(address: SocketAddr, arguments: &[&str]) -> std::io::Result<String> {
    Connection::open(address).await?.command(arguments).await
}
