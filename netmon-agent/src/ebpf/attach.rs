//! Attaching the programs to an interface and detaching them.

use aya::{
    Ebpf,
    programs::{SchedClassifier, TcAttachType, Xdp, XdpMode},
};
use netmon_common::{PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP};
use tracing::{debug, info};

use super::{AttachError, Attachment, HookMode, IngressHook, IngressLink, Kernel};

impl Kernel {
    /// Attaches the ingress program (per the configured hook) and the egress
    /// classifier to `name`.
    pub fn attach(&mut self, name: &str, ifindex: u32) -> Result<Attachment, AttachError> {
        let attach_err = |program, mode| {
            let iface = name.to_owned();
            move |source| AttachError::Attach {
                iface,
                program,
                mode,
                source,
            }
        };
        let (ingress, ingress_link) = match self.ingress {
            IngressHook::Auto => match xdp(&mut self.ebpf).attach(ifindex, XdpMode::Driver) {
                Ok(id) => (HookMode::XdpNative, IngressLink::Xdp(id)),
                Err(e) => {
                    let error = format!("{:#}", anyhow::Error::from(e));
                    info!(
                        iface = name,
                        error, "Native XDP attach failed; counting ingress with TC."
                    );
                    let id = classifier(&mut self.ebpf, PROG_TC_INGRESS)
                        .attach(ifindex, TcAttachType::Ingress)
                        .map_err(attach_err(PROG_TC_INGRESS, HookMode::Tc))?;
                    (HookMode::Tc, IngressLink::Tc(id))
                }
            },
            IngressHook::Xdp => {
                let id = xdp(&mut self.ebpf)
                    .attach(ifindex, XdpMode::Driver)
                    .map_err(attach_err(PROG_XDP, HookMode::XdpNative))?;
                (HookMode::XdpNative, IngressLink::Xdp(id))
            }
            IngressHook::XdpGeneric => {
                let id = xdp(&mut self.ebpf)
                    .attach(ifindex, XdpMode::Skb)
                    .map_err(attach_err(PROG_XDP, HookMode::XdpGeneric))?;
                (HookMode::XdpGeneric, IngressLink::Xdp(id))
            }
            IngressHook::Tc => {
                let id = classifier(&mut self.ebpf, PROG_TC_INGRESS)
                    .attach(ifindex, TcAttachType::Ingress)
                    .map_err(attach_err(PROG_TC_INGRESS, HookMode::Tc))?;
                (HookMode::Tc, IngressLink::Tc(id))
            }
        };
        let egress_link = match classifier(&mut self.ebpf, PROG_TC_EGRESS)
            .attach(ifindex, TcAttachType::Egress)
        {
            Ok(id) => id,
            Err(source) => {
                self.detach_ingress(ingress_link);
                return Err(AttachError::Attach {
                    iface: name.to_owned(),
                    program: PROG_TC_EGRESS,
                    mode: HookMode::Tc,
                    source,
                });
            }
        };
        info!(iface = name, ifindex, ingress = %ingress, "Attached.");
        Ok(Attachment {
            name: name.to_owned(),
            ifindex,
            ingress,
            ingress_link,
            egress_link,
        })
    }

    /// Detaches both programs from the interface. Detaching from an
    /// interface that no longer exists is not an error (the kernel already
    /// released the links).
    pub fn detach(&mut self, a: Attachment) {
        self.detach_ingress(a.ingress_link);
        if let Err(e) = classifier(&mut self.ebpf, PROG_TC_EGRESS).detach(a.egress_link) {
            debug!(iface = a.name, error = %e, "Detaching the egress program failed.");
        }
        info!(iface = a.name, ifindex = a.ifindex, "Detached.");
    }

    fn detach_ingress(&mut self, link: IngressLink) {
        let result = match link {
            IngressLink::Xdp(id) => xdp(&mut self.ebpf).detach(id),
            IngressLink::Tc(id) => classifier(&mut self.ebpf, PROG_TC_INGRESS).detach(id),
        };
        if let Err(e) = result {
            debug!(error = %e, "Detaching the ingress program failed.");
        }
    }
}

pub(super) fn xdp(ebpf: &mut Ebpf) -> &mut Xdp {
    ebpf.program_mut(PROG_XDP)
        .and_then(|p| p.try_into().ok())
        .expect("the object has the XDP program")
}

pub(super) fn classifier<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut SchedClassifier {
    ebpf.program_mut(name)
        .and_then(|p| p.try_into().ok())
        .expect("the object has the TC programs")
}
