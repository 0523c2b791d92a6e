//! The abstract network the protocol is written against.
//!
//! The authenticator and joiner are generic over [`Network`], so exactly the
//! same protocol code runs on real sockets ([`TokioNet`]) and inside a
//! deterministic turmoil simulation (`TurmoilNet`, feature `turmoil`). The
//! trait is deliberately small: bind a listener, accept, connect (optionally
//! from a chosen local IP, so that many joiners on one machine can each have
//! their own loopback address), and streams that are `AsyncRead +
//! AsyncWrite` and know their two addresses.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncWrite};

/// A connected byte stream.
pub trait NetStream: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static {
    /// The local end's address.
    fn local_addr(&self) -> io::Result<SocketAddr>;
    /// The remote end's address.
    fn peer_addr(&self) -> io::Result<SocketAddr>;
}

/// A bound listening socket.
pub trait Listener: Send + Sync + 'static {
    /// The stream type accepted connections produce.
    type Stream: NetStream;
    /// Waits for the next incoming connection.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
    /// The address other nodes use to reach this listener.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A network: how to listen and how to connect.
pub trait Network: Clone + Send + Sync + 'static {
    /// Connected stream type.
    type Stream: NetStream;
    /// Listener type.
    type Listener: Listener<Stream = Self::Stream>;
    /// Binds a listener on `addr` (port 0 picks a free port).
    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// Connects to `remote`, from `local_ip` when given.
    fn connect(
        &self,
        local_ip: Option<IpAddr>,
        remote: SocketAddr,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// Real sockets from `tokio::net`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioNet;

impl NetStream for tokio::net::TcpStream {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpStream::local_addr(self)
    }
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpStream::peer_addr(self)
    }
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, source) = tokio::net::TcpListener::accept(self).await?;
        // Every Pyile message is one small write, often two back to back
        // (`distro` then `dist_addr`): with Nagle on, the second waits for the
        // peer's delayed ACK (~40 ms on Linux). Reference joiners get their
        // writes spaced explicitly (`v1_pacing`), not by Nagle's accident.
        // (A failure here only costs latency: keep the connection.)
        let _ = stream.set_nodelay(true);
        Ok((stream, source))
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

impl Network for TokioNet {
    type Stream = tokio::net::TcpStream;
    type Listener = tokio::net::TcpListener;

    async fn bind(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(1024)
    }

    async fn connect(&self, local_ip: Option<IpAddr>, remote: SocketAddr) -> io::Result<Self::Stream> {
        let stream = match local_ip {
            None => tokio::net::TcpStream::connect(remote).await?,
            Some(ip) => {
                let socket =
                    if ip.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(remote).await?
            }
        };
        // One message per write, as the reference: no reason to delay it.
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

#[cfg(feature = "turmoil")]
pub use self::sim::TurmoilNet;

#[cfg(feature = "turmoil")]
mod sim {
    use super::*;

    /// Simulated sockets from `turmoil::net`, for one simulated host.
    ///
    /// turmoil hosts have exactly one IP and bind only unspecified or
    /// loopback addresses, so this network binds the unspecified address and
    /// reports the host's IP as every listener's address.
    #[derive(Clone, Copy, Debug)]
    pub struct TurmoilNet {
        host_ip: IpAddr,
    }

    impl TurmoilNet {
        /// The network of the simulated host whose IP is `host_ip`
        /// (`turmoil::lookup(name)`).
        pub fn new(host_ip: IpAddr) -> Self {
            TurmoilNet { host_ip }
        }
    }

    impl NetStream for turmoil::net::TcpStream {
        fn local_addr(&self) -> io::Result<SocketAddr> {
            turmoil::net::TcpStream::local_addr(self)
        }
        fn peer_addr(&self) -> io::Result<SocketAddr> {
            turmoil::net::TcpStream::peer_addr(self)
        }
    }

    /// A turmoil listener that reports its host's IP.
    pub struct TurmoilListener {
        inner: turmoil::net::TcpListener,
        host_ip: IpAddr,
    }

    impl Listener for TurmoilListener {
        type Stream = turmoil::net::TcpStream;
        fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send {
            self.inner.accept()
        }
        fn local_addr(&self) -> io::Result<SocketAddr> {
            let a = self.inner.local_addr()?;
            Ok(SocketAddr::new(self.host_ip, a.port()))
        }
    }

    impl Network for TurmoilNet {
        type Stream = turmoil::net::TcpStream;
        type Listener = TurmoilListener;

        async fn bind(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
            if !addr.ip().is_unspecified() && addr.ip() != self.host_ip {
                return Err(io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!("{addr} is not this simulated host's address ({})", self.host_ip),
                ));
            }
            let unspecified: IpAddr = if self.host_ip.is_ipv4() {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            };
            let inner = turmoil::net::TcpListener::bind(SocketAddr::new(unspecified, addr.port())).await?;
            Ok(TurmoilListener { inner, host_ip: self.host_ip })
        }

        async fn connect(&self, local_ip: Option<IpAddr>, remote: SocketAddr) -> io::Result<Self::Stream> {
            if let Some(ip) = local_ip
                && ip != self.host_ip
            {
                return Err(io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!("{ip} is not this simulated host's address ({})", self.host_ip),
                ));
            }
            turmoil::net::TcpStream::connect(remote).await
        }
    }
}
