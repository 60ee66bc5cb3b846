//! Re-point replicas at the master; rejoin former masters as replicas.

use crate::config::MemberSpec;
use crate::observe::{unfenced, Snapshot, FENCE_MIN_REPLICAS};
use crate::token::RecordWrite;
use crate::RedisController;
use switchyard_controller::{OpContext, Outcome, Result};

impl RedisController {
    pub(crate) async fn replicaof(&self, m: &MemberSpec, master: &MemberSpec) -> Result<()> {
        let mut c = redis::cmd("REPLICAOF");
        c.arg(&master.hostname).arg(master.port);
        self.run_cmd::<()>(m, &c).await?;
        self.rewrite_config(m).await;
        Ok(())
    }

    pub(crate) async fn repoint_followers(
        &self,
        snap: &Snapshot,
        ctx: &OpContext,
    ) -> Result<Outcome> {
        let master = self.require_master(snap)?;
        let mut moved = vec![];
        for p in snap.members.iter().filter(|p| p.is_replica()) {
            if !p.follows(&master.spec) {
                self.replicaof(&p.spec, &master.spec).await?;
                moved.push(p.spec.name.clone());
            }
        }
        if moved.is_empty() {
            return Ok(Outcome::already_done().with_member(&master.spec.name));
        }
        if !master.fenced() {
            self.record(&master.spec, ctx, RecordWrite::default())
                .await?;
        }
        Ok(Outcome::done()
            .with_member(&master.spec.name)
            .with_note(format!(
                "REPLICAOF {} on {}",
                master.spec.name,
                moved.join(", ")
            )))
    }

    /// Every other member that still says ROLE master is fenced first (it
    /// must not acknowledge a write while it is being moved), then made a
    /// replica of the master; replicas still carrying a fence get the
    /// master's `min-replicas-to-write` back and their pause lifted.
    pub(crate) async fn rejoin(&self, snap: &Snapshot, ctx: &OpContext) -> Result<Outcome> {
        let master = self.require_master(snap)?;
        let baseline = unfenced(master.min_replicas);
        let mut notes = vec![];
        for p in snap
            .members
            .iter()
            .filter(|p| p.reachable() && p.master && p.spec.name != master.spec.name)
        {
            if !p.fenced() {
                let mut set = redis::cmd("CONFIG");
                set.arg("SET")
                    .arg("min-replicas-to-write")
                    .arg(FENCE_MIN_REPLICAS);
                self.run_cmd::<()>(&p.spec, &set).await?;
            }
            self.replicaof(&p.spec, &master.spec).await?;
            notes.push(format!(
                "{} claimed ROLE master: fenced, now REPLICAOF {}",
                p.spec.name, master.spec.name
            ));
        }
        let rejoined: Vec<&str> = snap
            .members
            .iter()
            .filter(|p| p.reachable() && p.spec.name != master.spec.name)
            .filter(|p| p.fenced() || p.master)
            .map(|p| p.spec.name.as_str())
            .collect();
        for name in &rejoined {
            let spec = &snap.probe(name).expect("probed member").spec;
            self.lift_fence(spec, baseline).await?;
            self.rewrite_config(spec).await;
            notes.push(format!("{name}: min-replicas-to-write back to {baseline}"));
        }
        if notes.is_empty() {
            return Ok(Outcome::already_done().with_member(&master.spec.name));
        }
        if !rejoined.is_empty() {
            // A rejoined member must follow before it counts as rejoined.
            let names: Vec<String> = rejoined.iter().map(|s| s.to_string()).collect();
            let m = master.spec.clone();
            self.wait_snapshot(
                self.cfg.failover_timeout,
                &format!("{} replicating from {}", names.join(", "), m.name),
                |s| {
                    names
                        .iter()
                        .all(|n| s.probe(n).is_some_and(|p| p.is_replica() && p.follows(&m)))
                },
            )
            .await?;
        }
        self.record(&master.spec, ctx, RecordWrite::default())
            .await?;
        let mut out = Outcome::done().with_member(&master.spec.name);
        out.notes = notes;
        Ok(out)
    }
}
