//! TEMPORARY stub until the simulator branch lands.
use crate::time::Clock;
#[derive(Clone)]
pub struct Simulator;
impl Simulator {
    pub fn new(_c: Clock) -> Simulator {
        Simulator
    }
    pub fn add_account(&self, _a: &str, _s: &str, _l: crate::config::LimitTable) {}
    pub async fn start(
        self,
    ) -> std::io::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
        todo!()
    }
    pub async fn serve(
        self,
        _l: tokio::net::TcpListener,
        _s: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        todo!()
    }
}
