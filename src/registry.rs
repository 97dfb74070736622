//! Reflectors on one host tell each other their listening ports, so that two
//! of them on different ports (echo on 7007, STAMP on 862) cannot be made to
//! answer each other forever by one spoofed datagram.
//!
//! Each process writes one small file, `PID.ports`, into a runtime
//! directory (`/run/udp-reflector` as root, `$XDG_RUNTIME_DIR/udp-reflector`
//! otherwise), and removes it when it exits. The runtime thread (never a
//! worker) reads the directory at most once a second; the ports it finds
//! join the "reflector ports" that the source policy refuses
//! ([`crate::policy::SharedPorts`]). An entry counts only while its process
//! lives (same pid and start time in /proc) and is in our network
//! namespace: a port number means nothing in another one. Entries of
//! processes that are gone (killed with SIGKILL) are ignored and removed.
//!
//! Ordinary clients never register, so they keep working whatever their
//! ephemeral port is. What this cannot see: a reflector of another kind (a
//! foreign echo service) or on another host on a port other than ours;
//! `--allow` or `--max-pps-per-source` bound those.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use crate::policy::PortSet;

/// The directory reflectors of this user share, if there is one.
pub fn default_dir(is_root: bool) -> Option<PathBuf> {
    if is_root {
        return Some(PathBuf::from("/run/udp-reflector"));
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(&d).join("udp-reflector"))
}

/// Who we are, in terms that survive pid reuse and namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    pid: u32,
    /// Field 22 of /proc/PID/stat: start time in clock ticks since boot.
    start: u64,
    /// The target of /proc/PID/ns/net, such as `net:[4026531840]`.
    netns: String,
}

fn identity_of(pid: u32) -> Option<Identity> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let stat = fs::read_to_string(proc.join("stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields
    // after it are counted from the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let start = after.split_whitespace().nth(19)?.parse().ok()?;
    let netns = fs::read_link(proc.join("ns/net")).ok()?;
    Some(Identity {
        pid,
        start,
        netns: netns.to_string_lossy().into_owned(),
    })
}

/// One file of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    who: Identity,
    ports: Vec<u16>,
}

impl Entry {
    fn render(&self) -> String {
        let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        format!(
            "udp-reflector registry 1\npid {}\nstart {}\nnetns {}\nports {}\n",
            self.who.pid,
            self.who.start,
            self.who.netns,
            ports.join(" ")
        )
    }

    fn parse(text: &str) -> Option<Entry> {
        let mut lines = text.lines();
        if lines.next()? != "udp-reflector registry 1" {
            return None;
        }
        let mut field = |name: &str| -> Option<String> {
            let l = lines.next()?;
            Some(l.strip_prefix(name)?.strip_prefix(' ')?.to_string())
        };
        let pid = field("pid")?.parse().ok()?;
        let start = field("start")?.parse().ok()?;
        let netns = field("netns")?;
        let ports = field("ports")?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<Vec<u16>, _>>()
            .ok()?;
        Some(Entry {
            who: Identity { pid, start, netns },
            ports,
        })
    }
}

/// Our entry in the registry; removed on drop.
#[derive(Debug)]
pub struct Registry {
    dir: PathBuf,
    file: PathBuf,
    me: Identity,
}

impl Registry {
    /// Announces `ports` in `dir` (created if missing).
    pub fn announce(dir: &Path, ports: &[u16]) -> io::Result<Registry> {
        let me = identity_of(std::process::id())
            .ok_or_else(|| io::Error::other("cannot read /proc/self"))?;
        fs::create_dir_all(dir)?;
        let file = dir.join(format!("{}.ports", me.pid));
        let tmp = dir.join(format!(".{}.ports.tmp", me.pid));
        let entry = Entry {
            who: me.clone(),
            ports: ports.to_vec(),
        };
        {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(entry.render().as_bytes())?;
        }
        // Readers see the whole file or none of it.
        fs::rename(&tmp, &file)?;
        Ok(Registry {
            dir: dir.to_path_buf(),
            file,
            me,
        })
    }

    /// The ports of every other live reflector in our network namespace.
    /// Removes the entries of processes that are gone.
    pub fn others(&self) -> PortSet {
        let mut set = PortSet::default();
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return set;
        };
        for f in dir.flatten() {
            let path = f.path();
            if path == self.file || path.extension().map_or(true, |e| e != "ports") {
                continue;
            }
            let Some(entry) = fs::read_to_string(&path)
                .ok()
                .and_then(|t| Entry::parse(&t))
            else {
                continue;
            };
            match identity_of(entry.who.pid) {
                Some(live) if live.start == entry.who.start => {
                    if live.netns == self.me.netns && entry.who.netns == self.me.netns {
                        entry.ports.iter().for_each(|&p| set.insert(p));
                    }
                }
                // The process is gone (or its pid now belongs to another).
                _ => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        set
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("udp-reflector-reg-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn entries_round_trip_and_bad_ones_are_refused() {
        let e = Entry {
            who: Identity {
                pid: 42,
                start: 123,
                netns: "net:[4026531840]".into(),
            },
            ports: vec![7007, 862],
        };
        assert_eq!(Entry::parse(&e.render()), Some(e.clone()));
        assert_eq!(Entry::parse(""), None);
        assert_eq!(Entry::parse(&e.render().replace("7007", "70000")), None);
        assert_eq!(Entry::parse(&e.render().replace("pid 42", "pid x")), None);
    }

    #[test]
    fn live_entries_of_our_netns_count_and_dead_ones_are_removed() {
        let dir = tmpdir("live");
        let me = Registry::announce(&dir, &[7007]).unwrap();
        assert!(me.file.exists());
        // Our own entry is not "another reflector".
        assert!(!me.others().contains(7007));

        // A live process of ours (pid 1 is alive, but its start time differs:
        // treated as gone), a live one with the right identity, one in
        // another namespace, one dead.
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let live = identity_of(child.id()).unwrap();
        let write = |name: &str, who: Identity, ports: Vec<u16>| {
            fs::write(dir.join(name), Entry { who, ports }.render()).unwrap();
        };
        write("a.ports", live.clone(), vec![862]);
        write(
            "b.ports",
            Identity {
                netns: "net:[1]".into(),
                ..live.clone()
            },
            vec![11111],
        );
        write(
            "c.ports",
            Identity {
                start: live.start + 1,
                ..live.clone()
            },
            vec![9999],
        );
        fs::write(dir.join("junk.ports"), "nonsense").unwrap();
        let others = me.others();
        assert_eq!(others.iter().collect::<Vec<_>>(), vec![862]);
        assert!(!dir.join("c.ports").exists(), "a dead entry is removed");
        let _ = child.kill();
        let _ = child.wait();
        assert!(me.others().iter().next().is_none(), "its process is gone");
        let file = me.file.clone();
        drop(me);
        assert!(!file.exists(), "our entry is removed on drop");
        let _ = fs::remove_dir_all(&dir);
    }
}
