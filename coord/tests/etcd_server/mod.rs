//! Throwaway etcd members for tests: free loopback ports, a temp data dir each,
//! short Raft timers (`--heartbeat-interval 50 --election-timeout 500`, so
//! 1–2 s leases work), killed by PID on drop. Tests can kill and restart a
//! member on the same data dir, pause it (SIGSTOP) and resume it (SIGCONT).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long etcd may take to answer `/health` after it starts (~1 s usually).
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct EtcdServer {
    binary: PathBuf,
    dir: tempfile::TempDir,
    name: String,
    /// `--initial-cluster`: every member's name and peer URL.
    initial_cluster: String,
    pub client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    starts: usize,
}

/// The `etcd` binary, or `None` (tests skip loudly) when it is not installed
/// outside CI. In CI (`CI=true`) a missing etcd fails the test.
pub fn etcd_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("etcd")).find(|p| p.is_file()));
    if found.is_none() {
        let msg = "etcd is not installed (Debian package etcd-server; scripts/install-test-deps.sh installs it)";
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("{msg}: the etcd backend tests cannot run");
        }
        // Straight to the file descriptor: the test harness captures
        // `eprintln!` of passing tests, and a skip must be seen.
        let _ = writeln!(std::io::stderr(), "\n!!!!! SKIPPED: {msg}; the etcd backend is NOT tested !!!!!\n");
    }
    found
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port").local_addr().unwrap().port()
}

impl EtcdServer {
    /// Starts a single-member etcd and waits until it is healthy; `None` if
    /// etcd is not installed (outside CI).
    pub fn start() -> Option<EtcdServer> {
        Some(Self::cluster(1)?.pop().unwrap())
    }

    /// Starts an `n`-member cluster and waits until every member is healthy.
    pub fn cluster(n: usize) -> Option<Vec<EtcdServer>> {
        let binary = etcd_binary()?;
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial_cluster =
            ports.iter().enumerate().map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}")).collect::<Vec<_>>();
        let mut members: Vec<EtcdServer> = ports
            .iter()
            .enumerate()
            .map(|(i, &(client_port, peer_port))| EtcdServer {
                binary: binary.clone(),
                dir: tempfile::tempdir().expect("temp dir"),
                name: format!("m{i}"),
                initial_cluster: initial_cluster.join(","),
                client_port,
                peer_port,
                child: None,
                starts: 0,
            })
            .collect();
        // All first: a member of a larger cluster is healthy only with a quorum.
        for member in &mut members {
            member.launch();
        }
        for member in &mut members {
            member.wait_healthy();
        }
        Some(members)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint()]
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("etcd is running").id() as i32
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("etcd.{}.log", self.starts))
    }

    /// Starts etcd on the same data dir and ports, waiting until healthy.
    pub fn spawn(&mut self) {
        self.launch();
        self.wait_healthy();
    }

    fn launch(&mut self) {
        assert!(self.child.is_none(), "etcd is already running");
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).expect("etcd log file");
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(&self.binary)
            .args(["--name", &self.name, "--data-dir"])
            .arg(self.data_dir())
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
    }

    /// Restarts on the same data dir and peer port but another client port
    /// (clients of the old port see it as down).
    pub fn respawn_on_client_port(&mut self, client_port: u16) {
        self.client_port = client_port;
        self.spawn();
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("etcd exited at start ({status}); log:\n{}", self.log());
            }
            if health(self.client_port) {
                return;
            }
            assert!(Instant::now() < deadline, "etcd not healthy within {START_TIMEOUT:?}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the process holds its sockets but answers nothing (a slow or
    /// hung coordinator).
    pub fn pause(&self) {
        signal(self.pid(), libc::SIGSTOP);
    }

    pub fn resume(&self) {
        signal(self.pid(), libc::SIGCONT);
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}): {}", std::io::Error::last_os_error());
}

/// etcd's `/health` says `{"health":"true"}`.
fn health(port: u16) -> bool {
    http_get(port, "/health").is_some_and(|body| body.contains("\"health\":\"true\""))
}

/// A plain HTTP/1.0 GET on loopback; the body, or `None` on any failure.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut conn = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).ok()?;
    let mut response = String::new();
    conn.read_to_string(&mut response).ok()?;
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// A gauge or counter from etcd's Prometheus `/metrics`.
pub fn metric(port: u16, name: &str) -> Option<f64> {
    let body = http_get(port, "/metrics")?;
    body.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
