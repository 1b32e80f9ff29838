//! `cargo xtask install` and `cargo xtask uninstall`.
//!
//! Install puts in place the release binary, the systemd unit(s) with
//! ExecStart pointing at that binary, the example config (unless a config
//! is already there) and the `netmon` system user (for the
//! capability-restricted unit), and records each thing it created in a
//! manifest. Uninstall removes exactly what the manifest lists: a config the
//! operator edited since, or a user that existed before, stays.
//!
//! `--destdir` stages everything below a directory instead of `/` (for
//! packaging and tests); no user is created there.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, is_root, status, target_dir, toolchain};

/// The service user of the capability-restricted unit.
pub const USER: &str = "netmon";
const PRIVILEGED_UNIT: &str = "netmon-agent.service";
const RESTRICTED_UNIT: &str = "netmon-agent-caps.service";

#[derive(clap::Args)]
pub struct InstallArgs {
    /// Installation prefix of the binary (`<prefix>/bin/netmon-agent`).
    #[arg(long, default_value = "/usr/local")]
    prefix: PathBuf,
    /// Only the capability-restricted deployment: its unit and the netmon
    /// user, not the root unit.
    #[arg(long)]
    caps_only: bool,
    /// Stage below this directory instead of `/` (no user is created).
    #[arg(long, value_name = "DIR")]
    destdir: Option<PathBuf>,
    /// Install this binary instead of building the release one.
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
}

/// Where things go, below `destdir`.
pub struct Layout {
    pub destdir: PathBuf,
    pub prefix: PathBuf,
}

impl Layout {
    fn at(&self, path: &Path) -> PathBuf {
        self.destdir
            .join(path.strip_prefix("/").unwrap_or(path))
    }
    /// The binary's path on the installed system.
    pub fn binary(&self) -> PathBuf {
        self.prefix.join("bin/netmon-agent")
    }
    pub fn manifest(&self) -> PathBuf {
        self.at(&self.prefix.join("share/netmon/install-manifest"))
    }
    pub fn staged(&self) -> bool {
        self.destdir != Path::new("/")
    }
}

pub fn run(root: &Path, args: InstallArgs) -> Result<ExitCode> {
    let layout = Layout {
        destdir: args.destdir.unwrap_or_else(|| PathBuf::from("/")),
        prefix: args.prefix,
    };
    if !layout.staged() && !is_root() {
        bail!("installing to / needs root: run `sudo cargo xtask install` or give --destdir");
    }
    let binary = match args.binary {
        Some(b) => b,
        None => {
            toolchain::ensure_all(root)?;
            status(cargo(root).args(["build", "--release", "-p", "netmon-agent"]))?;
            target_dir(root).join("release/netmon-agent")
        }
    };
    let done = install_files(root, &layout, &binary, args.caps_only)?;
    for line in &done {
        println!("{line}");
    }
    let unit = if args.caps_only { RESTRICTED_UNIT } else { PRIVILEGED_UNIT };
    println!(
        "\nNext: `{} check` (preflight), then `systemctl daemon-reload && systemctl enable --now {unit}`.",
        layout.binary().display()
    );
    if !args.caps_only {
        println!(
            "For the capability-restricted deployment, enable {RESTRICTED_UNIT} instead (it runs as the {USER} user)."
        );
    }
    println!(
        "Undo with `cargo xtask uninstall --prefix {}{}`.",
        layout.prefix.display(),
        if layout.staged() { format!(" --destdir {}", layout.destdir.display()) } else { String::new() }
    );
    Ok(ExitCode::SUCCESS)
}

/// Installs everything and writes the manifest; returns what it did, a line
/// each.
pub fn install_files(
    root: &Path,
    layout: &Layout,
    binary: &Path,
    caps_only: bool,
) -> Result<Vec<String>> {
    let mut manifest = Vec::new();
    let mut said = Vec::new();
    if layout.manifest().exists() {
        bail!(
            "{} exists: netmon is already installed there; uninstall first",
            layout.manifest().display()
        );
    }
    let bin = layout.at(&layout.binary());
    put(binary, &bin, 0o755, &mut manifest)?;
    said.push(format!("installed {}", bin.display()));

    let units: &[&str] = if caps_only {
        &[RESTRICTED_UNIT]
    } else {
        &[PRIVILEGED_UNIT, RESTRICTED_UNIT]
    };
    for unit in units {
        let text = fs::read_to_string(root.join("deploy/systemd").join(unit))
            .with_context(|| format!("reading deploy/systemd/{unit}"))?;
        let text = text.replace(
            "ExecStart=/usr/bin/netmon-agent\n",
            &format!("ExecStart={}\n", layout.binary().display()),
        );
        let dst = layout.at(&Path::new("/etc/systemd/system").join(unit));
        write(&dst, text.as_bytes(), 0o644, &mut manifest)?;
        said.push(format!("installed {}", dst.display()));
    }

    let config = layout.at(Path::new("/etc/netmon/netmon.toml"));
    if config.exists() {
        said.push(format!("kept the existing {}", config.display()));
    } else {
        let text = fs::read(root.join("deploy/netmon.toml")).context("reading deploy/netmon.toml")?;
        write(&config, &text, 0o644, &mut manifest)?;
        said.push(format!("installed the example config as {}", config.display()));
    }

    if layout.staged() {
        said.push(format!("no {USER} user created (staged below {})", layout.destdir.display()));
    } else if user_exists(USER)? {
        said.push(format!("the {USER} user exists already"));
    } else {
        status(Command::new("useradd").args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "netmon telemetry agent",
            USER,
        ]))?;
        manifest.push(format!("user {USER}"));
        said.push(format!("created the system user {USER}"));
    }

    let m = layout.manifest();
    parents(&m, &mut manifest)?;
    let mut text = String::from("# Written by cargo xtask install; read by cargo xtask uninstall.\n");
    for line in &manifest {
        text.push_str(line);
        text.push('\n');
    }
    fs::write(&m, text).with_context(|| format!("writing {}", m.display()))?;
    said.push(format!("recorded all of it in {}", m.display()));
    Ok(said)
}

/// Removes what the manifest lists; returns what it did, a line each.
pub fn uninstall_files(root: &Path, layout: &Layout) -> Result<Vec<String>> {
    let m = layout.manifest();
    let text = fs::read_to_string(&m)
        .with_context(|| format!("reading {} (was netmon installed with this prefix?)", m.display()))?;
    let example = fs::read(root.join("deploy/netmon.toml")).unwrap_or_default();
    let mut said = Vec::new();
    let mut dirs = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (kind, what) = line.split_once(' ').unwrap_or((line, ""));
        match kind {
            "file" => {
                let path = PathBuf::from(what);
                if path.ends_with("etc/netmon/netmon.toml")
                    && fs::read(&path).is_ok_and(|t| t != example)
                {
                    said.push(format!("kept {} (edited since install)", path.display()));
                    continue;
                }
                match fs::remove_file(&path) {
                    Ok(()) => said.push(format!("removed {}", path.display())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        said.push(format!("{} was already gone", path.display()));
                    }
                    Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
                }
            }
            "dir" => dirs.push(PathBuf::from(what)),
            "user" => {
                status(Command::new("userdel").arg(what))?;
                said.push(format!("removed the user {what}"));
            }
            other => bail!("{}: unknown entry {other:?}", m.display()),
        }
    }
    fs::remove_file(&m).with_context(|| format!("removing {}", m.display()))?;
    said.push(format!("removed {}", m.display()));
    // Directories created by install, deepest first, if nothing else is in them.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        if fs::remove_dir(&d).is_ok() {
            said.push(format!("removed the empty directory {}", d.display()));
        }
    }
    Ok(said)
}

fn user_exists(name: &str) -> Result<bool> {
    let passwd = fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    Ok(passwd.lines().any(|l| l.split(':').next() == Some(name)))
}

/// Creates the missing parents of `path`, recording each.
fn parents(path: &Path, manifest: &mut Vec<String>) -> Result<()> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    let missing: Vec<&Path> = parent.ancestors().take_while(|p| !p.exists()).collect();
    for dir in missing.into_iter().rev() {
        fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
        manifest.push(format!("dir {}", dir.display()));
    }
    Ok(())
}

fn write(path: &Path, contents: &[u8], mode: u32, manifest: &mut Vec<String>) -> Result<()> {
    parents(path, manifest)?;
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    manifest.push(format!("file {}", path.display()));
    Ok(())
}

fn put(src: &Path, dst: &Path, mode: u32, manifest: &mut Vec<String>) -> Result<()> {
    let bytes = fs::read(src).with_context(|| format!("reading {}", src.display()))?;
    write(dst, &bytes, mode, manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
                if p.is_dir() {
                    stack.push(p);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn install_then_uninstall_leaves_nothing() {
        let root = crate::workspace_root();
        let dest = tempfile_dir();
        let bin = dest.join("fake-netmon-agent");
        fs::write(&bin, b"#!/bin/sh\n").unwrap();
        let layout = Layout {
            destdir: dest.join("root"),
            prefix: PathBuf::from("/usr/local"),
        };
        fs::create_dir(&layout.destdir).unwrap();
        install_files(&root, &layout, &bin, false).unwrap();
        let files = tree(&layout.destdir);
        for want in [
            "usr/local/bin/netmon-agent",
            "etc/systemd/system/netmon-agent.service",
            "etc/systemd/system/netmon-agent-caps.service",
            "etc/netmon/netmon.toml",
            "usr/local/share/netmon/install-manifest",
        ] {
            assert!(files.iter().any(|f| f == want), "no {want} in {files:?}");
        }
        let unit =
            fs::read_to_string(layout.destdir.join("etc/systemd/system/netmon-agent-caps.service"))
                .unwrap();
        assert!(unit.contains("\nExecStart=/usr/local/bin/netmon-agent\n"), "{unit}");
        let mode = fs::metadata(layout.destdir.join("usr/local/bin/netmon-agent"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        // A second install is refused rather than overwriting.
        assert!(install_files(&root, &layout, &bin, false).is_err());

        uninstall_files(&root, &layout).unwrap();
        assert_eq!(tree(&layout.destdir), Vec::<String>::new());
        fs::remove_dir_all(&dest).unwrap();
    }

    #[test]
    fn an_edited_config_and_existing_files_are_kept() {
        let root = crate::workspace_root();
        let dest = tempfile_dir();
        let bin = dest.join("fake");
        fs::write(&bin, b"x").unwrap();
        let layout = Layout {
            destdir: dest.join("root"),
            prefix: PathBuf::from("/usr"),
        };
        // Something of the operator's already in /etc.
        let theirs = layout.destdir.join("etc/their-file");
        fs::create_dir_all(theirs.parent().unwrap()).unwrap();
        fs::write(&theirs, b"keep").unwrap();
        install_files(&root, &layout, &bin, true).unwrap();
        assert!(
            !layout.destdir.join("etc/systemd/system/netmon-agent.service").exists(),
            "--caps-only installed the root unit"
        );
        let config = layout.destdir.join("etc/netmon/netmon.toml");
        fs::write(&config, b"interval = \"2s\"\n").unwrap();
        let said = uninstall_files(&root, &layout).unwrap();
        assert!(said.iter().any(|l| l.contains("edited since install")), "{said:?}");
        assert_eq!(
            tree(&layout.destdir),
            ["etc", "etc/netmon", "etc/netmon/netmon.toml", "etc/their-file"]
        );
        fs::remove_dir_all(&dest).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "xtask-install-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
