use std::fmt::Write as _;
use std::time::Duration;

/// Collects result rows and prints them as Markdown tables.
pub struct Report {
    pub quick: bool,
    text: String,
}

impl Report {
    pub fn new(quick: bool) -> Report {
        let mut text = String::new();
        let _ = writeln!(text, "# keyledger benchmark report\n");
        let _ = writeln!(text, "- machine: {}", machine());
        let _ = writeln!(
            text,
            "- mode: {}\n",
            if quick {
                "quick (smaller sizes)"
            } else {
                "full"
            }
        );
        print!("{text}");
        Report { quick, text }
    }

    pub fn section(&mut self, title: &str, header: &[&str]) {
        let mut line = format!("\n## {title}\n\n| {} |\n|", header.join(" | "));
        for _ in header {
            line.push_str("---|");
        }
        line.push('\n');
        print!("{line}");
        self.text.push_str(&line);
    }

    pub fn row(&mut self, cells: &[String]) {
        let line = format!("| {} |\n", cells.join(" | "));
        print!("{line}");
        self.text.push_str(&line);
    }

    pub fn note(&mut self, note: &str) {
        let line = format!("\n{note}\n");
        print!("{line}");
        self.text.push_str(&line);
    }

    pub fn finish(mut self, elapsed: Duration) -> anyhow::Result<()> {
        self.note(&format!("Total bench time: {:.1} s", elapsed.as_secs_f64()));
        // Beside the build, wherever CARGO_TARGET_DIR puts it (`make bench` runs through cargo,
        // which passes it on); else the workspace's `target/`.
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
            });
        std::fs::create_dir_all(&target)?;
        let path = target.join("bench-report.md");
        std::fs::write(&path, &self.text).map_err(|err| {
            anyhow::anyhow!("cannot write the report to {}: {err}", path.display())
        })?;
        println!("\nreport written to {}", path.display());
        Ok(())
    }
}

pub fn rate(count: f64, elapsed: Duration) -> f64 {
    count / elapsed.as_secs_f64().max(1e-9)
}

pub fn human(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2} M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1} k", value / 1e3)
    } else {
        format!("{value:.1}")
    }
}

pub fn ratio(ours: f64, baseline: f64) -> String {
    format!("{:.2}", ours / baseline.max(1e-9))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
        })
        .map(|kib| format!("{:.0} GiB", kib as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {memory}")
}

/// Peak resident memory of this process so far (VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

/// CPU time (user + system) this process has used so far, in seconds.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}
