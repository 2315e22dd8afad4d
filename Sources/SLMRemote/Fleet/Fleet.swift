// The publisher's view of its fleet: every device report under a remote's `reports/`, counted
// per model and version (running it, going for it, rejected it, failed on it) and per active
// rollout (its share and failure rate). Reports come from devices, so each is bounded and
// checked, and a damaged one is listed rather than trusted.

import SLMFormats
import SLMLocalStore
import Foundation

/// What the devices reporting to a remote run, per model and version, with the rollouts' shares and
/// failure rates (what `fleet` prints).
public struct FleetView: Sendable {
    /// Devices on, or going for, one version, by state.
    public struct Counts: Sendable, Equatable {
        /// Devices whose installed version this is.
        public var running = 0
        /// Devices going for this version that have not reached it yet (pending or downloading).
        public var pending = 0
        /// Devices whose health check failed this version (they went back).
        public var rejected = 0
        /// Devices whose last round going for this version failed (download, verification, install).
        public var failed = 0
        /// Devices running this version whose last report is older than the silence threshold.
        public var silent = 0
        /// Bytes the devices reported downloading for this version in their last round.
        public var bytesFetched: UInt64 = 0

        /// Of the devices that took this version (reached it, or tried and failed), the share that
        /// rejected or failed it.
        public var failureRate: Double {
            let took = running + rejected + failed
            return took == 0 ? 0 : Double(rejected + failed) / Double(took)
        }
    }

    /// An active rollout with the counts for its version.
    public struct Rollout: Sendable, Equatable {
        /// The model.
        public var model: String
        /// The stage rolled out to.
        public var stage: String
        /// The version rolled out.
        public var version: String
        /// The share of devices, in percent.
        public var percent: Double
        /// What the reports say of that version.
        public var counts: Counts
    }

    /// Devices with a readable report.
    public var devices = 0
    /// model -> version -> counts.
    public var models: [String: [String: Counts]] = [:]
    /// The manifest's active rollouts, with their counts.
    public var rollouts: [Rollout] = []
    /// Devices whose last report is older than the threshold.
    public var silentDevices: [String] = []
    /// Report files that could not be read, with why.
    public var damaged: [String] = []
}

/// Reading a remote's device reports into a `FleetView`.
public enum Fleet {
    /// Reports read at most (10,000 devices' worth of 4 KiB each is 40 MB of reading, not of memory:
    /// each is decoded and counted, then dropped).
    public static let maxReports = 100_000

    /// Reads `reports/` of `backend` and counts it; `manifest` (when readable) adds its active
    /// rollouts. `now` and `silentAfter` (seconds) decide who is silent.
    public static func view(of backend: StoreBackend, manifest: Manifest?, now: time_t, silentAfter: Double) throws -> FleetView {
        var view = FleetView()
        let files = try backend.list(DeviceReport.directory, recursive: false).filter { $0.hasSuffix(".json") }
        guard files.count <= maxReports else {
            throw SLMError.remote(url: "\(backend.location)/\(DeviceReport.directory)", problem: "\(files.count) reports, more than the \(maxReports) fleet reads")
        }
        for path in files {
            let source = "\(backend.location)/\(path)"
            do {
                guard let bytes = try backend.read(path, limit: DeviceReport.maxEncodedSize) else { continue }
                count(try DeviceReport.decode(bytes, source: source), into: &view, now: now, silentAfter: silentAfter)
            } catch let e as SLMError where !e.isTransient {
                view.damaged.append(e.description)
            }
        }
        if let manifest {
            for (model, entry) in manifest.models.sorted(by: { $0.key < $1.key }) {
                for (stage, r) in entry.rollouts.sorted(by: { $0.key < $1.key }) where r.state == .active {
                    view.rollouts.append(.init(model: model, stage: stage, version: r.version, percent: r.percent,
                                               counts: view.models[model]?[r.version] ?? FleetView.Counts()))
                }
            }
        }
        view.silentDevices.sort()
        return view
    }

    static func count(_ report: DeviceReport, into view: inout FleetView, now: time_t, silentAfter: Double) {
        view.devices += 1
        let silent = Timestamp.parse(report.time).map { Double(now - $0) > silentAfter } ?? true
        if silent { view.silentDevices.append(report.device) }
        for (model, m) in report.models {
            var versions = view.models[model] ?? [:]
            if let installed = m.installed {
                versions[installed, default: .init()].running += 1
                if silent { versions[installed, default: .init()].silent += 1 }
            }
            if let target = m.target {
                switch m.state {
                case .pending where target != m.installed, .downloading where target != m.installed:
                    versions[target, default: .init()].pending += 1
                case .rejected: versions[target, default: .init()].rejected += 1
                case .failed where target != m.installed: versions[target, default: .init()].failed += 1
                default: break
                }
                versions[target, default: .init()].bytesFetched &+= m.bytesFetched
            }
            view.models[model] = versions
        }
    }
}

extension RolloutRecord {
    /// Whether the fleet's counts for this rollout's version call for a halt, and why.
    public func haltReason(_ counts: FleetView.Counts) -> String? {
        haltReason(running: counts.running, rejected: counts.rejected, failed: counts.failed)
    }
}
