//! Plumbing for the WebDriver tests: an X display (Xvfb when none is set), `tauri-driver` on fresh ports,
//! stopped with SIGTERM (a killed driver leaves WebKitWebDriver holding its port), a session with the
//! app, and polling helpers.
#![allow(dead_code)] // each test binary uses its own subset

pub mod page;

use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set to skip the WebDriver tests (explicitly; CI never sets it).
pub const SKIP_ENV: &str = "UNISAL_SKIP_WEBDRIVER";

/// A child process stopped with SIGTERM (then SIGKILL after a grace period) when dropped.
pub struct Guarded {
    name: &'static str,
    child: Child,
}

impl Guarded {
    pub fn spawn(name: &'static str, command: &mut Command) -> Self {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {name}: {e} (is it installed? see .ci/run)"));
        Guarded { name, child }
    }

    /// Panics when the process has already exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited early with {status}", self.name);
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{} did not stop on SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral port");
    listener.local_addr().expect("reading the ephemeral port").port()
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16, timeout: Duration, process: &mut Guarded) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        process.assert_running();
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing listened on port {port} after {timeout:?}");
}

/// The X display to use: `$DISPLAY`, or a new Xvfb (returned so it lives as long as the test).
pub fn display() -> (String, Option<Guarded>) {
    if let Some(d) = std::env::var_os("DISPLAY").filter(|d| !d.is_empty()) {
        return (d.to_string_lossy().into_owned(), None);
    }
    // A display number nobody holds (no lock file), starting from one derived from our pid.
    let start = 90 + std::process::id() % 400;
    let number = (start..start + 200)
        .find(|n| !Path::new(&format!("/tmp/.X{n}-lock")).exists())
        .expect("a free X display number");
    let name = format!(":{number}");
    let mut xvfb = Guarded::spawn(
        "Xvfb",
        Command::new("Xvfb")
            .args([name.as_str(), "-screen", "0", "1400x900x24", "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let socket = PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while !socket.exists() {
        xvfb.assert_running();
        assert!(Instant::now() < deadline, "Xvfb {name} did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    (name, Some(xvfb))
}

/// `tauri-driver` on fresh ports for `display`, with the app's folders under `home`.
pub fn tauri_driver(display: &str, home: &Path) -> (Guarded, u16) {
    let port = free_port();
    let native = loop {
        let p = free_port();
        if p != port {
            break p;
        }
    };
    let binary = std::env::var_os("TAURI_DRIVER").map(PathBuf::from).unwrap_or_else(|| {
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
        cargo_home.map(|c| c.join("bin/tauri-driver")).filter(|p| p.exists()).unwrap_or("tauri-driver".into())
    });
    let mut driver = Guarded::spawn(
        "tauri-driver",
        Command::new(binary)
            .args(["--port", &port.to_string(), "--native-port", &native.to_string()])
            .env("DISPLAY", display)
            .env("UNISAL_STUDIO_HOME", home)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    // tauri-driver starts WebKitWebDriver beside its own server: a session request that arrives before the native
    // driver listens is dropped (the client sees an incomplete message), so wait for both.
    wait_for_port(port, Duration::from_secs(30), &mut driver);
    wait_for_port(native, Duration::from_secs(30), &mut driver);
    (driver, port)
}

/// A WebDriver session that starts the app binary `app` with `args`.
pub async fn connect(port: u16, app: &str, args: &[String]) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("wry"));
    caps.insert("tauri:options".into(), json!({ "application": app, "args": args }));
    ClientBuilder::native()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session with the app")
}

/// Runs `js` in the window and returns its value; panics with the script when it fails.
pub async fn script(client: &Client, js: &str) -> Value {
    client.execute(js, vec![]).await.unwrap_or_else(|e| panic!("script failed: {e}\n{js}"))
}

/// Polls `check` until it returns a value; on timeout, panics with what the window shows.
pub async fn wait_until<F, Fut>(client: &Client, what: &str, timeout: Duration, mut check: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<Value>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            let shown = client.execute("return document.body.innerText;", vec![]).await;
            panic!("timed out after {timeout:?} waiting for {what}; the window shows:\n{shown:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Everything a WebDriver run needs: the driver on its port, an X display, and a temporary app home
/// (recent projects, demo). Dropped in field order: the driver (and the app) first, the home folder last.
pub struct Harness {
    _driver: Guarded,
    _xvfb: Option<Guarded>,
    /// The app's home folder (`UNISAL_STUDIO_HOME`), also a place for the run's files.
    pub home: tempfile::TempDir,
    /// tauri-driver's port.
    pub port: u16,
}

impl Harness {
    /// Starts the display and the driver; `None` (with a message) when [`SKIP_ENV`] asks to skip.
    pub fn start() -> Option<Self> {
        if std::env::var_os(SKIP_ENV).is_some_and(|v| !v.is_empty() && v != "0") {
            println!("SKIPPED: {SKIP_ENV} is set; the WebDriver run did not happen");
            return None;
        }
        let home = tempfile::tempdir().expect("temporary app home");
        let (display, xvfb) = display();
        let (driver, port) = tauri_driver(&display, home.path());
        Some(Harness { _driver: driver, _xvfb: xvfb, home, port })
    }

    /// A session with the app started with `args`.
    pub async fn connect(&self, app: &str, args: &[String]) -> Client {
        connect(self.port, app, args).await
    }
}
