//! Keeping the attachments in step with the system's interfaces.

use std::{collections::HashMap, path::Path};

use tracing::warn;

use super::Error;
use crate::{
    ebpf::{AttachError, Attachments, Kernel},
    ifaces,
};

/// Keeps the attachments in step with the system's interfaces: attaches to
/// interfaces that appear (or are re-created with a new index) and forgets
/// those that disappear.
pub struct Watcher {
    /// Interfaces named with --iface; empty means the default selection.
    named: Vec<String>,
    /// Interfaces whose attach failed, so the failure is logged once.
    failed: HashMap<u32, String>,
    /// Interfaces removed since the last call.
    pub(super) removed: Vec<u32>,
}

impl Watcher {
    pub fn new(named: Vec<String>) -> Self {
        Watcher {
            named,
            failed: HashMap::new(),
            removed: Vec::new(),
        }
    }

    /// At start-up (`first`) any failure is an error; later, failures are
    /// logged and retried on the next call.
    pub fn reconcile(
        &mut self,
        kernel: &mut Kernel,
        attached: &mut Attachments,
        first: bool,
    ) -> Result<(), Error> {
        let present = ifaces::list(Path::new(ifaces::SYS_CLASS_NET)).map_err(Error::Interfaces)?;
        let gone: Vec<u32> = attached
            .iter()
            .filter(|(ifindex, a)| {
                !present
                    .iter()
                    .any(|i| i.ifindex == **ifindex && i.name == a.name)
            })
            .map(|(ifindex, _)| *ifindex)
            .collect();
        for ifindex in gone {
            if let Some(a) = attached.remove(&ifindex) {
                warn!(
                    iface = a.name,
                    ifindex, "Interface went away; will re-attach if it returns."
                );
                kernel.detach(a);
                self.removed.push(ifindex);
            }
        }
        if first
            && let Some(name) = self
                .named
                .iter()
                .find(|n| !present.iter().any(|i| &i.name == *n))
        {
            return Err(Box::new(AttachError::UnknownInterface(name.clone())).into());
        }
        let wanted = present.iter().filter(|i| {
            if self.named.is_empty() {
                i.watched_by_default()
            } else {
                self.named.contains(&i.name)
            }
        });
        let mut any = !attached.is_empty();
        for iface in wanted {
            if attached.contains_key(&iface.ifindex) {
                continue;
            }
            match kernel.attach(&iface.name, iface.ifindex) {
                Ok(a) => {
                    self.failed.remove(&iface.ifindex);
                    attached.insert(iface.ifindex, a);
                    any = true;
                }
                Err(e) if first => return Err(Box::new(e).into()),
                Err(e) => {
                    if self
                        .failed
                        .insert(iface.ifindex, iface.name.clone())
                        .is_none()
                    {
                        warn!(error = %format!("{:#}", anyhow::Error::from(e)), "Cannot attach; will retry.");
                    }
                }
            }
        }
        if first && !any {
            return Err(Error::NoInterfaces);
        }
        Ok(())
    }
}
