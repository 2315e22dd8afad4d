// What one sync round does for one followed model, decided from the manifest and the device's own
// records before anything is fetched: which version is the target (the stage's, or a staged
// rollout's when this device falls in its share and has not rejected it) and whether to skip it,
// stay, switch to a copy already on disk, or download. A pure function, tested without a remote.

import SLMFormats
import SLMLocalStore
import SLMRemote

struct SyncModelPlan: Equatable {
    enum Action: Equatable {
        /// The target was rejected here (failed its health check) and the publisher has not reset
        /// rejections since: not retried.
        case skipRejected
        /// The target is installed and current.
        case upToDate
        /// The target is on disk but `--download-only` leaves switching to a later round.
        case awaitActivation
        /// The target is on disk (a rollback, or a download-only round before): switch to it.
        case activate
        /// The target must be pulled first.
        case download
    }

    var target: SemVer
    var targetID: SHA256Digest
    /// The rollout's rejection reset count when the target comes from a rollout (0 otherwise):
    /// a rejection recorded under an older count no longer holds.
    var rolloutReset: UInt64
    var action: Action

    static func decide(_ name: ModelName, _ selector: String, manifest: Manifest, location: String, deviceID: String,
                       rejected: RejectedVersions, current: String?, installedID: (String) -> SHA256Digest?,
                       downloadOnly: Bool) throws -> SyncModelPlan {
        var (target, targetID) = try RemoteSelection.select(name, selector, in: manifest, location: location)
        var reset: UInt64 = 0
        // A rollout naming something that is not a version is not followed; the stage is.
        if let rollout = manifest.models[name.value]?.rollouts[selector], rollout.id != targetID,
           let version = SemVer(parsing: rollout.version),
           manifest.models[name.value]?.versions.contains(where: { $0.id == rollout.id && $0.version == rollout.version }) == true,
           RolloutSlice.includes(device: deviceID, model: name.value, version: rollout.version, percent: rollout.percent),
           !rejected.rejects(rollout.id, reset: rollout.reset) {
            (target, targetID) = (version, rollout.id)
            reset = rollout.reset
        }
        func plan(_ action: Action) -> SyncModelPlan { SyncModelPlan(target: target, targetID: targetID, rolloutReset: reset, action: action) }
        if rejected.rejects(targetID, reset: reset), current != target.description { return plan(.skipRejected) }
        let onDisk = installedID(target.description) == targetID
        if current == target.description, onDisk { return plan(.upToDate) }
        if onDisk { return plan(downloadOnly ? .awaitActivation : .activate) }
        return plan(.download)
    }
}
