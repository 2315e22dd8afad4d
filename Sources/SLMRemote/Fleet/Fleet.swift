// The publisher's view of its fleet: the signed report of every device it enrolled, counted
// per model and version (running it, going for it, rejected it, failed on it) and per active
// rollout (its share and failure rate). Anything else under reports/ (unenrolled, unsigned,
// forged, replayed, misnamed, future-dated, junk) is listed apart, never counted, and read only
// up to a bound.

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

    /// A report file that was not counted, and why.
    public struct Refused: Sendable, Equatable {
        /// Why a report file was not counted.
        public enum Reason: String, Sendable, CaseIterable {
            /// A valid signed report from a device the publisher has not enrolled (listed with its
            /// key, for `device enroll`).
            case unenrolled
            /// A report without a signature (format 1) from a device that is not enrolled.
            case unsigned
            /// At an enrolled device's file, or naming an enrolled device: not signed by its key.
            case forged
            /// An enrolled device's report with a counter below one already seen (or the same
            /// counter with other content).
            case replayed
            /// The file's name is not the one the report's device writes.
            case misnamed
            /// Dated more than five minutes ahead of the publisher's clock.
            case future
            /// Not a report at all (does not parse, too large, not a regular file).
            case damaged
        }
        /// The file under the remote.
        public var file: String
        /// The device it names, when it could be read.
        public var device: String?
        /// Why it was not counted.
        public var reason: Reason
        /// More detail, for people.
        public var detail: String
        /// The key of an unenrolled device's valid signed report (what enrolling it would accept).
        public var key: Ed25519PublicKey?
    }

    /// Enrolled devices whose report was counted.
    public var devices = 0
    /// Devices the publisher enrolled for this remote.
    public var enrolled = 0
    /// Enrolled devices that have sent no report yet.
    public var missing: [String] = []
    /// model -> version -> counts, over every counted report.
    public var models: [String: [String: Counts]] = [:]
    /// model -> version -> counts over fresh reports only (not silent): what halts and advances use.
    public var freshModels: [String: [String: Counts]] = [:]
    /// The manifest's active rollouts, with their counts.
    public var rollouts: [Rollout] = []
    /// Devices whose last report is older than the threshold.
    public var silentDevices: [String] = []
    /// Report files that were read and not counted, with why.
    public var refused: [Refused] = []
    /// Files under reports/ beyond what one run reads (never read; listed as a count).
    public var skipped = 0

    /// Reports that show someone other than the device wrote them (forged, replayed, misnamed or
    /// future-dated): while there are any, `fleet --apply` advances nothing.
    public var suspicious: [Refused] {
        refused.filter { [.forged, .replayed, .misnamed, .future].contains($0.reason) }
    }

    /// Report files that could not be read, with why (the `damaged` ones among `refused`).
    public var damaged: [String] { refused.filter { $0.reason == .damaged }.map(\.detail) }

    /// The fresh counts of one version.
    public func freshCounts(model: String, version: String) -> Counts { freshModels[model]?[version] ?? Counts() }
}

/// Reading a remote's device reports into a `FleetView`.
public enum Fleet {
    /// Files under reports/ beyond the enrolled devices' own that one run lists.
    public static let maxOtherFiles = 10_000
    /// Of those, how many are read (to list unenrolled devices and forgeries); the rest are counted as skipped.
    public static let maxOtherReads = 1_000
    /// A report dated further ahead of the reader's clock than this is refused as future-dated.
    public static let maxClockSkew: Double = 300

    /// Reads the report of every device `enrolled` names (one file each, at the name the device
    /// writes), counts the valid ones, and lists a bounded number of other files to show
    /// unenrolled devices and forgeries. `counters` holds the highest counter seen per device;
    /// it is raised here (the caller saves it). `manifest` (when readable) adds its active
    /// rollouts for display; `now` and `silentAfter` (seconds) decide who is silent.
    public static func view(of backend: StoreBackend, manifest: Manifest?, enrolled: DeviceEnrollment, counters: inout ReportCounters,
                            now: time_t, silentAfter: Double) throws -> FleetView {
        var view = FleetView()
        view.enrolled = enrolled.devices.count
        let directory = DeviceReport.directory
        func read(_ path: String) throws -> SignedDeviceReport? {
            guard let bytes = try backend.read(path, limit: DeviceReport.maxEncodedSize) else { return nil }
            return try SignedDeviceReport.decode(bytes, source: "\(backend.location)/\(path)")
        }
        func refuse(_ path: String, _ device: String?, _ reason: FleetView.Refused.Reason, _ detail: String, key: Ed25519PublicKey? = nil) {
            view.refused.append(.init(file: path, device: device, reason: reason, detail: detail, key: key))
        }
        let enrolledFiles = Dictionary(enrolled.devices.keys.map { ("\(directory)/\(DeviceReport.fileName(device: $0))", $0) },
                                       uniquingKeysWith: { a, _ in a })
        for (path, id) in enrolledFiles.sorted(by: { $0.key < $1.key }) {
            let device = enrolled.devices[id]!
            let signed: SignedDeviceReport
            do {
                guard let r = try read(path) else { view.missing.append(id); continue }
                signed = r
            } catch let e as SLMError where !e.isTransient {
                refuse(path, id, .forged, "\(path): not a valid report at enrolled device \(id)'s file (\(e.description))")
                continue
            }
            let r = signed.report
            guard signed.key == device.key, signed.signatureValid else {
                refuse(path, r.device, .forged, signed.key == nil ? "\(path): unsigned, but \(id) is enrolled and signs its reports"
                                                                  : "\(path): not signed by the key enrolled for \(id)")
                continue
            }
            guard r.device == id else {
                refuse(path, r.device, .misnamed, "\(path): \(id)'s file holds a report of \(r.device)")
                continue
            }
            guard let time = Timestamp.parse(r.time), Double(time - now) <= maxClockSkew else {
                refuse(path, id, .future, "\(path): dated \(r.time), ahead of this clock")
                continue
            }
            if let last = counters.seen[id], r.counter < last.counter || (r.counter == last.counter && signed.payloadDigest != last.digest) {
                refuse(path, id, .replayed, "\(path): counter \(r.counter), but \(last.counter) was seen from \(id) before")
                continue
            }
            counters.seen[id] = (r.counter, signed.payloadDigest)
            count(r, into: &view, now: now, silentAfter: silentAfter)
        }
        // Everything else under reports/: bounded by what the enrolled fleet explains, never by
        // what a writer put there.
        let listing = try backend.list(directory, recursive: false, limit: enrolled.devices.count + maxOtherFiles)
        var reads = 0
        for path in listing.paths where enrolledFiles[path] == nil {
            guard reads < maxOtherReads else { view.skipped += 1; continue }
            reads += 1
            let signed: SignedDeviceReport
            do {
                guard let r = try read(path) else { continue }
                signed = r
            } catch let e as SLMError where !e.isTransient {
                refuse(path, nil, .damaged, e.description)
                continue
            }
            let r = signed.report
            let named = "\(directory)/\(DeviceReport.fileName(device: r.device))"
            if let device = enrolled.devices[r.device] {
                // Another file speaking for an enrolled device: a copy of its report, or a forgery.
                let copy = signed.key == device.key && signed.signatureValid
                refuse(path, r.device, copy ? .misnamed : .forged, copy ? "\(path): a copy of \(r.device)'s report under another name"
                                                                        : "\(path): names enrolled device \(r.device) but is not signed by its key")
            } else if named != path {
                refuse(path, r.device, .misnamed, "\(path): holds a report of \(r.device), whose file is \(named)")
            } else if let key = signed.key {
                if signed.signatureValid {
                    refuse(path, r.device, .unenrolled, "\(path): \(r.device) is not enrolled", key: key)
                } else {
                    refuse(path, r.device, .forged, "\(path): its signature does not verify")
                }
            } else {
                refuse(path, r.device, .unsigned, "\(path): \(r.device) is not enrolled and its report is unsigned")
            }
        }
        if listing.truncated { view.skipped += 1 }
        if let manifest {
            for (model, entry) in manifest.models.sorted(by: { $0.key < $1.key }) {
                for (stage, r) in entry.rollouts.sorted(by: { $0.key < $1.key }) where r.state == .active {
                    view.rollouts.append(.init(model: model, stage: stage, version: r.version, percent: r.percent,
                                               counts: view.models[model]?[r.version] ?? FleetView.Counts()))
                }
            }
        }
        view.silentDevices.sort()
        view.missing.sort()
        return view
    }

    static func count(_ report: DeviceReport, into view: inout FleetView, now: time_t, silentAfter: Double) {
        view.devices += 1
        let silent = Timestamp.parse(report.time).map { Double(now - $0) > silentAfter } ?? true
        if silent { view.silentDevices.append(report.device) }
        tally(report, into: &view.models, silent: silent)
        if !silent { tally(report, into: &view.freshModels, silent: false) }
    }

    static func tally(_ report: DeviceReport, into models: inout [String: [String: FleetView.Counts]], silent: Bool) {
        for (model, m) in report.models {
            var versions = models[model] ?? [:]
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
            models[model] = versions
        }
    }
}

extension RolloutRecord {
    /// Whether the fleet's counts for this rollout's version call for a halt, and why.
    public func haltReason(_ counts: FleetView.Counts) -> String? {
        haltReason(running: counts.running, rejected: counts.rejected, failed: counts.failed)
    }
}
