// Staged rollouts: a version takes a stage for a share of devices first. The stage ref keeps the
// version everyone else runs until the rollout completes; the rollout record (one per model and
// stage) says which version, for what percent, and is published in the manifest. Devices decide
// for themselves, deterministically, whether they are in the share (RolloutSlice).

import SLMFormats
import Foundation

/// A stage's rollout record: which version takes the stage for what share of devices, in what
/// state, and the rules that halt or advance it (Format.md).
public struct RolloutRecord: Sendable, Equatable {
    /// Active (devices in the share follow it), halted (none do) or completed (the stage ref
    /// moved).
    public enum State: String, Sendable { case active, halted, completed }

    /// Grows with every change, so the newest record wins wherever records are copied.
    public var serial: UInt64
    /// The version rolled out.
    public var version: String
    /// Its version id.
    public var id: SHA256Digest
    /// The share of devices, in percent.
    public var percent: Double
    /// Where the rollout stands.
    public var state: State
    /// Raised by `--reset-rejections`: devices that rejected this version try it again.
    public var reset: UInt64
    /// When it last changed (RFC 3339 UTC).
    public var time: String
    /// Who changed it (user@host).
    public var by: String
    /// Halt automatically (`fleet --apply`) once more than this percent of the devices that took
    /// the version rejected or failed it, counted only from `minDevices` such devices on.
    public var haltOnFailure: Double? = nil
    /// From how many devices that took the version on the fleet's counts decide: a halt, and
    /// (with `advanceAfter`) an advance.
    public var minDevices: Int = 10
    /// Raise the share by `advanceStep` points (`fleet --apply`) once this many seconds passed
    /// since the last change, while at least `minDevices` took the version and the failure rate
    /// stays at or under `haltOnFailure`.
    public var advanceAfter: Int? = nil
    /// Percentage points each advance adds.
    public var advanceStep: Double = 0

    /// Longest wait between steps: ten years.
    public static let maxAdvanceAfter = 3650 * 86400

    /// The record as the JSON value Format.md specifies.
    public var json: JSONValue {
        var o: [String: JSONValue] = ["serial": .int(serial), "version": .string(version), "id": .string(id.hex), "percent": .number(Self.format(percent)),
                                      "state": .string(state.rawValue), "reset": .int(reset), "time": .string(time), "by": .string(by)]
        if let haltOnFailure { o["halt_on_failure"] = .number(Self.format(haltOnFailure)) }
        if let advanceAfter {
            o["advance_after"] = .int(advanceAfter)
            o["advance_step"] = .number(Self.format(advanceStep))
        }
        if haltOnFailure != nil || advanceAfter != nil { o["min_devices"] = .int(minDevices) }
        return .object(o)
    }

    /// A percent as people write it: "10" for 10.0, "12.5" otherwise.
    package static func format(_ p: Double) -> String { p == p.rounded() ? String(Int(p)) : String(p) }

    /// Decodes and checks a rollout record; `source` names it in errors.
    public static func decode(_ v: JSONValue, source: String) throws -> RolloutRecord {
        func bad(_ m: String) -> SLMError { .damaged(path: source, problem: "rollout record: \(m)") }
        guard let serial = v["serial"]?.uint64Value, let version = v["version"]?.stringValue, SemVer(parsing: version) != nil,
              let id = v["id"]?.stringValue.flatMap(SHA256Digest.init(hex:)),
              case let .number(text)? = v["percent"], let percent = Double(text), percent > 0, percent <= 100,
              let state = v["state"]?.stringValue.flatMap(State.init(rawValue:)) else { throw bad("missing or invalid fields") }
        var r = RolloutRecord(serial: serial, version: version, id: id, percent: percent, state: state, reset: v["reset"]?.uint64Value ?? 0,
                              time: v["time"]?.stringValue ?? "", by: v["by"]?.stringValue ?? "")
        if let h = v["halt_on_failure"] {
            guard case let .number(text) = h, let t = Double(text), t >= 0, t < 100 else {
                throw bad("halt_on_failure needs a percent from 0 to below 100")
            }
            r.haltOnFailure = t
        }
        if let a = v["advance_after"] {
            guard let after = a.uint64Value, after >= 1, after <= UInt64(maxAdvanceAfter),
                  case let .number(text)? = v["advance_step"], let step = Double(text), step > 0, step <= 100 else {
                throw bad("advance_after needs seconds from 1 to \(maxAdvanceAfter) and advance_step a percent above 0, at most 100")
            }
            (r.advanceAfter, r.advanceStep) = (Int(after), step)
        }
        if r.haltOnFailure != nil || r.advanceAfter != nil {
            guard let n = v["min_devices"]?.uint64Value, n >= 1, n <= 1_000_000 else { throw bad("min_devices needs a whole number from 1") }
            r.minDevices = Int(n)
        }
        return r
    }

    /// The share this rollout should advance to at `now`, given the fleet's counts for its version
    /// (see `advanceAfter`); nil while it should stay where it is.
    public func nextShare(running: Int, rejected: Int, failed: Int, now: time_t) -> Double? {
        guard state == .active, let after = advanceAfter, percent < 100, let since = Timestamp.parse(time),
              Int64(now) - Int64(since) >= Int64(after), running + rejected + failed >= minDevices,
              haltReason(running: running, rejected: rejected, failed: failed) == nil else { return nil }
        return min(100, percent + advanceStep)
    }

    /// Whether the fleet's counts for this rollout's version call for a halt, and why: of the
    /// devices that took it (`running` reached it, `rejected` or `failed` tried), the share that
    /// rejected or failed it. (Sync/Fleet.swift counts the reports; this layer sees only numbers.)
    public func haltReason(running: Int, rejected: Int, failed: Int) -> String? {
        guard state == .active, let threshold = haltOnFailure else { return nil }
        let took = running + rejected + failed
        guard took > 0, took >= minDevices, Double(rejected + failed) / Double(took) * 100 > threshold else { return nil }
        return "fleet: \(rejected + failed) of \(took) devices that took \(version) rejected or failed it (more than \(Self.format(threshold))%)"
    }
}

/// Whether a device is in a rollout's share: a hash of device id, model and version, so every
/// rollout samples its own slice and raising the percent only adds devices.
public enum RolloutSlice {
    /// A number in [0, 100) fixed for (device, model, version).
    public static func position(device: String, model: String, version: String) -> Double {
        let digest = SHA256Hasher.hash(Array("\(device)\u{0}\(model)\u{0}\(version)".utf8)).bytes
        let n = digest.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return Double(n % 1_000_000) / 10_000
    }

    /// Whether `device` is in a rollout of `model@version` to `percent` of devices (the same answer
    /// on every device and every run).
    public static func includes(device: String, model: String, version: String, percent: Double) -> Bool {
        position(device: device, model: model, version: version) < percent
    }
}

extension Store {
    func rolloutPath(_ name: ModelName, _ stage: String) -> String { "\(registryPath(name))/@rollouts/\(stage)" }

    /// The rollout record of `stage`, if the model has one.
    public func rollout(of name: ModelName, stage: String) throws -> RolloutRecord? {
        let path = rolloutPath(name, stage)
        guard FileSystem.exists(path) else { return nil }
        let bytes = try FileSystem.readFile(path, limit: 1 << 20)
        let value: JSONValue
        do { value = try JSONValue.parse(bytes) } catch { throw SLMError.damaged(path: path, problem: "rollout record").caused(by: error) }
        return try RolloutRecord.decode(value, source: path)
    }

    /// Every readable rollout record of a model, by stage, and the damaged ones as errors naming
    /// their files: for listings, which show what they can and name what they cannot.
    public func readableRollouts(of name: ModelName) -> (records: [String: RolloutRecord], damaged: [SLMError]) {
        var out: [String: RolloutRecord] = [:], damaged: [SLMError] = []
        for stage in ["staging", "production", "archived"] {
            do { if let r = try rollout(of: name, stage: stage) { out[stage] = r } } catch let e as SLMError {
                damaged.append(e)
            } catch {
                damaged.append(SLMError.damaged(path: rolloutPath(name, stage), problem: "\(error)"))
            }
        }
        return (out, damaged)
    }

    /// Every rollout record of a model, by stage.
    public func rollouts(of name: ModelName) throws -> [String: RolloutRecord] {
        var out: [String: RolloutRecord] = [:]
        for stage in ["staging", "production", "archived"] { if let r = try rollout(of: name, stage: stage) { out[stage] = r } }
        return out
    }

    /// Puts `r` on `stage` for `percent` of devices (100 completes it: the stage ref moves, as a
    /// promote would, through the same gates). The stage's current holder stays for the rest.
    @discardableResult
    public func startRollout(_ r: ResolvedVersion, stage: String, percent: Double, resetRejections: Bool = false,
                             haltOnFailure: Double? = nil, minDevices: Int = 10, advanceAfter: Int? = nil, advanceStep: Double? = nil,
                             options: PromoteOptions = PromoteOptions()) throws -> RolloutRecord {
        guard ["staging", "production", "archived"].contains(stage) else { throw SLMError.argument("unknown stage \"\(stage)\"") }
        guard percent > 0, percent <= 100 else { throw SLMError.invalidSetting(.rolloutPercent, problem: "must be more than 0 and at most 100") }
        let previous = try rollout(of: r.name, stage: stage)
        if percent == 100 {
            let holder = try stageHolder(r.name, stage)
            if holder?.1 != r.id { _ = try promote(r, to: stage, options: options) }
        } else {
            guard let holder = try stageHolder(r.name, stage) else {
                throw SLMError.notFound("\(r.name)@\(stage) has no version yet; promote one before rolling out to a share of devices")
            }
            guard holder.1 != r.id else { throw SLMError.conflict("\(r.name)@\(r.version) already holds \(stage) for every device") }
            if let refusal = try gateRefusal(r, stage: stage, options: options, action: "roll out") { throw refusal }
        }
        let lock = try refsLock()
        defer { lock.unlock() }
        var reset = previous?.reset ?? 0
        if resetRejections { reset += 1 }
        var record = RolloutRecord(serial: (previous?.serial ?? 0) + 1, version: r.version.description, id: r.id, percent: percent,
                                   state: percent == 100 ? .completed : .active, reset: reset, time: Timestamp.now(), by: Identity.current())
        // Raising the share keeps the halt and advance rules the rollout was started with, unless
        // new ones are given.
        let continuing = previous.map { $0.version == record.version && $0.state == .active } ?? false
        guard minDevices >= 1, minDevices <= 1_000_000 else { throw SLMError.invalidSetting(.minReportingDevices, problem: "must be a whole number from 1") }
        if let haltOnFailure {
            guard haltOnFailure >= 0, haltOnFailure < 100 else {
                throw SLMError.invalidSetting(.haltOnFailure, problem: "must be a percent from 0 to below 100")
            }
            (record.haltOnFailure, record.minDevices) = (haltOnFailure, minDevices)
        } else if continuing, let previous {
            (record.haltOnFailure, record.minDevices) = (previous.haltOnFailure, previous.minDevices)
        }
        if let advanceAfter {
            let step = advanceStep ?? percent
            guard advanceAfter >= 1, advanceAfter <= RolloutRecord.maxAdvanceAfter, step > 0, step <= 100 else {
                throw SLMError.invalidSetting(.advanceSchedule, problem: "must be from 1 s to 3650 days, and a step a percent above 0, at most 100")
            }
            (record.advanceAfter, record.advanceStep) = (advanceAfter, step)
            if haltOnFailure == nil && !(continuing && previous?.haltOnFailure != nil) { record.minDevices = minDevices }
        } else if continuing, let previous {
            (record.advanceAfter, record.advanceStep) = (previous.advanceAfter, previous.advanceStep)
        }
        try FileSystem.makeDirectories(FileSystem.dirname(rolloutPath(r.name, stage)))
        try FileSystem.writeAtomically(record.json.canonicalBytes(), to: rolloutPath(r.name, stage))
        if percent < 100 {
            let holder = try stageHolder(r.name, stage)
            try appendRecord(HistoryRecord(time: record.time, by: record.by, action: "rollout \(RolloutRecord.format(percent))%", stage: stage,
                                           from: holder?.0.description, to: r.version.description, outcome: "ok", reason: options.reason).json,
                             to: historyPath(r.name))
        }
        return record
    }

    /// Stops an active rollout: devices on its version go back to the stage holder.
    @discardableResult
    public func haltRollout(_ name: ModelName, stage: String, reason: String? = nil) throws -> RolloutRecord {
        let lock = try refsLock()
        defer { lock.unlock() }
        guard var record = try rollout(of: name, stage: stage), record.state == .active else {
            throw SLMError.notFound("\(name)@\(stage) has no rollout in progress")
        }
        record.serial += 1
        record.state = .halted
        record.time = Timestamp.now()
        record.by = Identity.current()
        try FileSystem.writeAtomically(record.json.canonicalBytes(), to: rolloutPath(name, stage))
        try appendRecord(HistoryRecord(time: record.time, by: record.by, action: "halt", stage: stage,
                                       from: record.version, to: try stageHolder(name, stage)?.0.description ?? "-", outcome: "ok",
                                       reason: reason).json, to: historyPath(name))
        return record
    }
}
