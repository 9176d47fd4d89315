//! A client connection's byte stream: the TCP socket itself, or TLS over it
//! (tokio-rustls, on the same epoll socket the connection already uses, so
//! the frame reader and writer in `connection.rs` are unchanged).
//!
//! Fetch and TLS: sendfile(2) sends file bytes as they are, and TLS must
//! encrypt them, so over TLS a file range is read into memory
//! (`TLS_FILE_CHUNK_BYTES` at a time, from the page cache with pread) and
//! written through the TLS stream. Kernel TLS (kTLS) would keep sendfile
//! zero-copy by encrypting in the kernel; it is not done.

use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Bytes of a file range read into memory at once to be encrypted: the one
/// buffer a TLS fetch adds per connection while its response is written.
pub const TLS_FILE_CHUNK_BYTES: usize = 64 * 1024;

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// The socket, when bytes may go to it untouched (sendfile).
    pub fn plain(&mut self) -> Option<&mut TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(_) => None,
        }
    }

    /// Writes a file range through TLS: read, then encrypt.
    pub async fn write_file(&mut self, f: &laminar_engine::FileSlice) -> std::io::Result<()> {
        let mut buf = vec![0u8; TLS_FILE_CHUNK_BYTES.min(f.len as usize)];
        let (mut at, end) = (f.position, f.position + f.len);
        while at < end {
            let want = ((end - at) as usize).min(buf.len());
            let n = f.file.read_at(&mut buf[..want], at)?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file ended during a TLS fetch"));
            }
            self.write_all(&buf[..n]).await?;
            at += n as u64;
        }
        Ok(())
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
