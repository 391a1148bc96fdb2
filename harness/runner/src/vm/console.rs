//! A guest's serial console: everything it printed, logged to a file as it arrives, with
//! waits on what it says and the signs of a dying kernel.

use std::io::{Read, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct ConsoleState {
    text: String,
    closed: bool,
    /// (arrival time, text length after the chunk), to time what the guest printed.
    arrivals: Vec<(Instant, usize)>,
}

/// The serial console: everything the guest printed, logged to a file as it arrives.
#[derive(Clone)]
pub struct Console {
    shared: Arc<(Mutex<ConsoleState>, Condvar)>,
}

pub enum Waited<T> {
    Found(T),
    Closed,
    TimedOut,
    /// The run was interrupted (SIGINT, SIGTERM).
    Interrupted,
}

impl Console {
    pub fn spawn(mut reader: impl Read + Send + 'static, mut log: std::fs::File) -> Console {
        let shared = Arc::new((Mutex::new(ConsoleState::default()), Condvar::new()));
        let s = shared.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = reader.read(&mut buf).unwrap_or(0);
                let (lock, cv) = &*s;
                let mut st = lock.lock().expect("console");
                if n == 0 {
                    st.closed = true;
                    cv.notify_all();
                    break;
                }
                let _ = log.write_all(&buf[..n]);
                st.text.push_str(&String::from_utf8_lossy(&buf[..n]).replace('\r', ""));
                let len = st.text.len();
                st.arrivals.push((Instant::now(), len));
                cv.notify_all();
            }
        });
        Console { shared }
    }

    /// Waits until `f` finds something in the console text, the console closes, or the
    /// deadline passes.
    pub fn wait_until<T>(&self, deadline: Instant, mut f: impl FnMut(&str) -> Option<T>) -> Waited<T> {
        let (lock, cv) = &*self.shared;
        let mut st = lock.lock().expect("console");
        loop {
            if let Some(t) = f(&st.text) {
                return Waited::Found(t);
            }
            if st.closed {
                return Waited::Closed;
            }
            if crate::interrupt::requested().is_some() {
                return Waited::Interrupted;
            }
            let now = Instant::now();
            if now >= deadline {
                return Waited::TimedOut;
            }
            st = cv.wait_timeout(st, (deadline - now).min(Duration::from_millis(50))).expect("console").0;
        }
    }

    /// When `pattern` first arrived, measured from `start`.
    pub fn seen_after(&self, pattern: &str, start: Instant) -> Option<Duration> {
        let st = self.shared.0.lock().expect("console");
        let end = st.text.find(pattern)? + pattern.len();
        st.arrivals.iter().find(|(_, len)| *len >= end).map(|(t, _)| t.duration_since(start))
    }

    pub fn text(&self) -> String {
        self.shared.0.lock().expect("console").text.clone()
    }

    /// The lines around the first panic marker (what caused it and what followed), or the
    /// last lines when there is none.
    pub fn panic_context(&self) -> String {
        let t = self.text();
        let lines: Vec<&str> = t.lines().collect();
        let at = lines.iter().position(|l| panic_marker(l).is_some() || panic_marker(&format!("{l}\n")).is_some());
        match at {
            Some(i) => lines[i.saturating_sub(10)..(i + 20).min(lines.len())].join("\n"),
            None => lines[lines.len().saturating_sub(25)..].join("\n"),
        }
    }

    pub fn last_lines(&self, n: usize) -> String {
        let t = self.text();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// Signs of a dying guest kernel, Linux and FreeBSD.
pub fn panic_marker(text: &str) -> Option<&'static str> {
    const ANYWHERE: &[&str] =
        &["Kernel panic - not syncing", "BUG: kernel NULL pointer", "general protection fault", "KDB: enter: panic"];
    // FreeBSD's panic line and debugger prompt start a line.
    const LINE_START: &[&str] = &["panic: ", "db> ", "Oops: "];
    ANYWHERE
        .iter()
        .find(|m| text.contains(*m))
        .or_else(|| LINE_START.iter().find(|m| text.lines().any(|l| l.starts_with(*m))))
        .copied()
}
