// `fleet --apply`: the publisher acting on what its fleet reports. Each active rollout whose
// failure rate passed its threshold is halted; each one due for its next step (and healthy) is
// raised; either change is pushed so devices see it at their next round. The publisher's own
// rollout record decides: the remote's copy is only what it last pushed.

import SLMFormats
import SLMLocalStore
import Foundation

/// What `applyFleet` did to one rollout.
public enum FleetAction: Sendable, Equatable {
    /// The rollout failed its threshold and was halted, with why.
    case halted(model: String, stage: String, reason: String)
    /// The rollout was raised from one share to the next.
    case advanced(model: String, stage: String, from: Double, to: Double)
    /// Due for its next step, but the step was refused (a promotion gate at 100%).
    case held(model: String, stage: String, reason: String)
}

extension Store {
    /// Halts or advances this store's active rollouts by what `view` counts of enrolled devices'
    /// fresh reports, at time `now`, pushing each change to `remote` with `push` (its signing and
    /// pages; deltas are not rewritten). The rollouts are this store's records, not the remote's:
    /// a rollout someone removed from the remote's manifest is still halted when it fails. While
    /// `view` holds reports that someone other than their device wrote, nothing advances.
    public func applyFleet(_ view: FleetView, to remote: any StoreBackend, now: time_t, push: PushOptions) throws -> [FleetAction] {
        var actions: [FleetAction] = []
        var push = push
        push.deltas = false
        let suspicious = view.suspicious
        for name in try models() {
            for (stage, record) in try rollouts(of: name).sorted(by: { $0.key < $1.key }) where record.state == .active {
                let c = view.freshCounts(model: name.value, version: record.version)
                if let reason = record.haltReason(c) {
                    try haltRollout(name, stage: stage, reason: reason)
                    actions.append(.halted(model: name.value, stage: stage, reason: reason))
                } else if let next = record.nextShare(running: c.running, rejected: c.rejected, failed: c.failed, now: now) {
                    guard suspicious.isEmpty else {
                        let kinds = Set(suspicious.map(\.reason.rawValue)).sorted().joined(separator: ", ")
                        actions.append(.held(model: name.value, stage: stage,
                                             reason: "\(suspicious.count) report files failed their checks (\(kinds)): nothing advances while someone other than the devices writes reports; remove them (see the fleet listing) and run again"))
                        continue
                    }
                    var options = PromoteOptions()
                    options.reason = "fleet: \(c.running + c.rejected + c.failed) devices took \(record.version), "
                        + "\(c.rejected + c.failed) rejected or failed it; advanced after \(record.advanceAfter ?? 0) s"
                    do {
                        try startRollout(try resolve(.exact(name, try SemVer(record.version))), stage: stage, percent: next, options: options)
                    } catch let e as SLMError {
                        // A gate that refuses the next share holds the rollout where it is.
                        guard case let .conflict(message) = e.kind else { throw e }
                        actions.append(.held(model: name.value, stage: stage, reason: message))
                        continue
                    }
                    actions.append(.advanced(model: name.value, stage: stage, from: record.percent, to: next))
                } else {
                    continue
                }
                _ = try self.push(to: remote, refs: [.exact(name, try SemVer(record.version))], options: push)
            }
        }
        return actions
    }
}
