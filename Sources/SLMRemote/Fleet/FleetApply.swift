// `fleet --apply`: the publisher acting on what its fleet reports. Each active rollout whose
// failure rate passed its threshold is halted; each one due for its next step (and healthy) is
// raised; either change is pushed so devices see it at their next round. The publisher's own
// rollout record decides: the remote's copy is only what it last pushed.

import SLMFormats
import SLMLocalStore
import Foundation

/// What `applyFleet` did to one rollout.
public enum FleetAction: Sendable, Equatable {
    case halted(model: String, stage: String, reason: String)
    case advanced(model: String, stage: String, from: Double, to: Double)
    /// Due for its next step, but the step was refused (a promotion gate at 100%).
    case held(model: String, stage: String, reason: String)
}

extension Store {
    /// Halts or advances the rollouts `view` counts, at time `now`, pushing each change to
    /// `remote` with `push` (its signing and pages; deltas are not rewritten).
    public func applyFleet(_ view: FleetView, to remote: any StoreBackend, now: time_t, push: PushOptions) throws -> [FleetAction] {
        var actions: [FleetAction] = []
        var push = push
        push.deltas = false
        for r in view.rollouts {
            let name = try ModelName(r.model)
            guard let record = try rollout(of: name, stage: r.stage), record.version == r.version, record.state == .active else { continue }
            let c = r.counts
            if let reason = record.haltReason(c) {
                try haltRollout(name, stage: r.stage, reason: reason)
                actions.append(.halted(model: r.model, stage: r.stage, reason: reason))
            } else if let next = record.nextShare(running: c.running, rejected: c.rejected, failed: c.failed, now: now) {
                var options = PromoteOptions()
                options.reason = "fleet: \(c.running + c.rejected + c.failed) devices took \(record.version), "
                    + "\(c.rejected + c.failed) rejected or failed it; advanced after \(record.advanceAfter ?? 0) s"
                do {
                    try startRollout(try resolve(.exact(name, try SemVer(record.version))), stage: r.stage, percent: next, options: options)
                } catch let e as SLMError {
                    // A gate that refuses the next share holds the rollout where it is.
                    guard case let .conflict(message) = e.kind else { throw e }
                    actions.append(.held(model: r.model, stage: r.stage, reason: message))
                    continue
                }
                actions.append(.advanced(model: r.model, stage: r.stage, from: record.percent, to: next))
            } else {
                continue
            }
            _ = try self.push(to: remote, refs: [.exact(name, try SemVer(r.version))], options: push)
        }
        return actions
    }
}
