//! Starting the cluster's processes, each in its own process group, and stopping exactly the
//! ones a cluster started: every program is recorded in `processes` (name, pid, stop signal)
//! and is only signalled while its command line still names the cluster's directory.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::Error;

/// The file, inside a cluster directory, listing what it started.
pub const PROCESSES_FILE: &str = "processes";

/// How long a process gets to exit after its stop signal before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// A program of the cluster, started and recorded.
#[derive(Debug)]
pub struct Process {
    pub name: &'static str,
    pub child: Child,
    pub log: PathBuf,
}

impl Process {
    /// Fails with the end of the program's log if it has already exited.
    pub fn check_running(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Exited {
                name: self.name,
                status: status.to_string(),
                log: self.log.clone(),
                tail: log_tail(&self.log),
            }),
            Err(source) => Err(Error::Io {
                context: format!("failed to check on {}", self.name),
                source,
            }),
        }
    }
}

/// Starts `command` in its own process group with its output in `<dir>/logs/<name>.log`, and
/// records it in the cluster's process list so that `stop` (or the lifeline) can end it.
pub fn spawn(
    dir: &Path,
    name: &'static str,
    stop_signal: Signal,
    mut command: Command,
) -> Result<Process, Error> {
    let log = dir.join("logs").join(format!("{name}.log"));
    // Appended to: a program started again (PostgreSQL, in tests) keeps its earlier log.
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|source| Error::Io {
            context: format!("failed to create {}", log.display()),
            source,
        })?;
    let stderr = file.try_clone().map_err(|source| Error::Io {
        context: format!("failed to open {}", log.display()),
        source,
    })?;
    let child = command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .map_err(|source| Error::Io {
            context: format!(
                "failed to start {name} ({})",
                command.get_program().to_string_lossy()
            ),
            source,
        })?;
    let mut record = String::new();
    let _ = writeln!(record, "{name} {} {}", child.id(), stop_signal.as_str());
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(PROCESSES_FILE))
        .and_then(|mut file| file.write_all(record.as_bytes()))
        .map_err(|source| Error::Io {
            context: format!("failed to record {name} in {}", dir.display()),
            source,
        })?;
    Ok(Process { name, child, log })
}

/// Starts the lifeline of a cluster owned by this process: a shell that waits for its stdin
/// to close, which happens when this process exits however it exits, then stops every
/// recorded process and removes the directory. The returned handle must be kept open.
pub fn spawn_lifeline(dir: &Path) -> Result<ChildStdin, Error> {
    // Like `stop_all`: last started first, each given time to exit before it is killed.
    const SCRIPT: &str = r#"
read -r _ || :
if [ -f "$0/processes" ]; then
  tac "$0/processes" | while read -r name pid signal; do
    kill -s "${signal#SIG}" -- "-$pid" 2>/dev/null || continue
    i=0
    # A zombie has exited: whoever inherited it may never reap it.
    while grep -qv ') Z' "/proc/$pid/stat" 2>/dev/null && [ $i -lt 300 ]; do
      i=$((i + 1)); sleep 0.05
    done
    kill -s KILL -- "-$pid" 2>/dev/null
  done
fi
rm -rf "$0"
"#;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|source| Error::Io {
            context: "failed to start the cluster's lifeline (sh)".to_owned(),
            source,
        })?;
    child.stdin.take().ok_or_else(|| Error::Io {
        context: "the lifeline has no stdin".to_owned(),
        source: std::io::Error::other("no pipe"),
    })
}

/// A line of the process list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub name: String,
    pub pid: i32,
    pub signal: Signal,
}

/// Reads the process list of a cluster directory.
pub fn recorded(dir: &Path) -> Result<Vec<Recorded>, Error> {
    let path = dir.join(PROCESSES_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                context: format!("failed to read {}", path.display()),
                source,
            });
        }
    };
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?.to_owned();
            let pid = fields.next()?.parse().ok()?;
            let signal = fields.next()?.parse().ok()?;
            Some(Recorded { name, pid, signal })
        })
        .collect())
}

/// Whether `pid` is alive and is still the program the cluster in `dir` started (its command
/// line names the directory), so a recycled pid is never signalled.
pub fn is_ours(pid: i32, dir: &Path) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    if is_zombie(pid) {
        return false;
    }
    let needle = dir.as_os_str().as_encoded_bytes();
    cmdline.windows(needle.len()).any(|window| window == needle)
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the command name, which is in parentheses and may hold spaces.
            let after = stat.rsplit_once(')')?.1;
            after.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(true)
}

/// Stops every recorded process of the cluster in `dir`, last started first, and returns
/// the names of those that had to be killed.
pub fn stop_all(dir: &Path) -> Result<Vec<String>, Error> {
    let mut killed = Vec::new();
    for process in recorded(dir)?.into_iter().rev() {
        if !is_ours(process.pid, dir) {
            continue;
        }
        let group = Pid::from_raw(process.pid);
        let _ = killpg(group, process.signal).or_else(|_| kill(group, process.signal));
        let deadline = Instant::now() + STOP_GRACE;
        while is_ours(process.pid, dir) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if is_ours(process.pid, dir) {
            let _ = killpg(group, Signal::SIGKILL);
            killed.push(process.name);
        }
    }
    Ok(killed)
}

/// The last lines of a log, to explain why a program stopped.
pub fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
