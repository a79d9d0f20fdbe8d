//! A real disk that runs out of space: a tmpfs of a fixed size, for tests of what a full disk
//! does to the log and the server. Mounting needs root (as in CI); without it `mount` panics
//! and says why, so a test never passes without having filled a disk.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of a fixed size mounted on a temporary directory, unmounted on drop.
#[derive(Debug)]
pub struct SmallDisk {
    mount_point: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(size_kib: u64) -> SmallDisk {
        let mount_point = tempfile::tempdir().expect("tempdir");
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_kib}k,mode=0700"),
                "tmpfs",
            ])
            .arg(mount_point.path())
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "THIS TEST NEEDS ROOT: it mounts a small tmpfs to fill the disk for real, and \
             `mount -t tmpfs` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        SmallDisk { mount_point }
    }

    pub fn path(&self) -> &Path {
        self.mount_point.path()
    }

    /// Writes a file until not one more byte fits; remove it to free the space.
    pub fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = File::create(&path).expect("create filler");
        // Bounded: a tmpfs of a few dozen MiB holds far fewer chunks than these.
        for chunk in [vec![0x5Au8; 64 * 1024], vec![0x5Au8; 512]] {
            for _ in 0..1_000_000 {
                if let Err(error) = file.write_all(&chunk) {
                    assert_eq!(error.raw_os_error(), Some(28), "expected ENOSPC: {error}");
                    break;
                }
            }
        }
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.mount_point.path())
            .status();
    }
}
