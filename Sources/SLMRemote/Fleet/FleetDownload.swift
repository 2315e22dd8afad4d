// What a fleet will download to reach a target version: for every version devices report
// running, how many devices, and what one of them fetches (`diff` of that version and the target,
// counting delta records only where the remote holds a delta set from that version).

import SLMFormats
import SLMLocalStore
import Foundation

/// What the devices on each version download to reach a target version (`fleet --target`).
public struct FleetDownload: Sendable {
    /// The devices on one version.
    public struct Row: Sendable, Equatable {
        /// The version they run.
        public var from: String
        /// How many devices run it.
        public var devices: Int
        /// What one device on `from` fetches; nil when this store does not hold `from`.
        public var bytesEach: UInt64?
        /// Whether the remote has a delta set from `from` to the target (`push --deltas-for-fleet`).
        public var viaDeltas: Bool
    }

    /// The target, NAME@VERSION.
    public var target: String
    /// One row per version devices run.
    public var rows: [Row]
    /// Over the rows whose versions this store holds.
    public var totalBytes: UInt64 { rows.reduce(0) { $0 + ($1.bytesEach ?? 0) * UInt64($1.devices) } }
    /// Devices on versions this store does not hold (not in `totalBytes`).
    public var devicesUnknown: Int { rows.filter { $0.bytesEach == nil }.reduce(0) { $0 + $1.devices } }
}

extension Store {
    /// The download `view`'s devices face to reach `target`, from this (the publisher's) store
    /// and the delta sets `remote` holds.
    public func fleetDownload(_ view: FleetView, to target: ResolvedVersion, remote: any ReadableBackend) throws -> FleetDownload {
        var rows: [FleetDownload.Row] = []
        let index = try loadChunkIndex()
        let targetTree = try readTree(target.object.tree)
        for (v, counts) in (view.models[target.name.value] ?? [:]).sorted(by: { $0.key < $1.key }) where counts.running > 0 {
            guard v != target.version.description else { continue }
            // A version this store does not hold (or that no longer parses) cannot be measured.
            guard let sv = SemVer(parsing: v), let from = try resolveIfPresent(target.name, sv) else {
                rows.append(.init(from: v, devices: counts.running, bytesEach: nil, viaDeltas: false))
                continue
            }
            let viaDeltas = try remote.exists(RemoteLayout.deltaSetPath(target: target.id, base: from.id))
            let d = try diff(from: try readTree(from.object.tree), to: targetTree, index: index,
                             deltas: viaDeltas ? try deltaSizes(target: target, base: from, index: index) : [:])
            rows.append(.init(from: v, devices: counts.running, bytesEach: d.bytesToFetch, viaDeltas: viaDeltas))
        }
        return FleetDownload(target: "\(target.name)@\(target.version)", rows: rows)
    }
}
