// The registry on top of the store: metrics beside versions, per-model promotion policies,
// stage refs moved only through gates, an append-only history, and dependency checks.

import SLMFormats
import Foundation

/// Metrics recorded for a version (an evaluation's results), with who recorded them and from where.
public struct MetricRecord: Sendable {
    /// When (RFC 3339 UTC).
    public var time: String
    /// Who (user@host).
    public var by: String
    /// Where the values came from (a file, or the command line).
    public var source: String
    /// The metrics, by name.
    public var values: [String: JSONValue]

    var json: JSONValue {
        .object(["time": .string(time), "by": .string(by), "source": .string(source), "values": .object(values)])
    }

    init(time: String, by: String, source: String, values: [String: JSONValue]) {
        self.time = time
        self.by = by
        self.source = source
        self.values = values
    }

    init?(_ v: JSONValue) {
        guard let values = v["values"]?.objectValue else { return nil }
        self.init(time: v["time"]?.stringValue ?? "", by: v["by"]?.stringValue ?? "", source: v["source"]?.stringValue ?? "", values: values)
    }
}

/// One entry of a model's registry history: a stage moved, or a move refused.
public struct HistoryRecord: Sendable {
    /// When (RFC 3339 UTC).
    public var time: String
    /// Who (user@host).
    public var by: String
    /// What was done: "promote", "rollback", "leave" (staging left on promotion), "rollout N%" or "halt".
    public var action: String
    /// The stage.
    public var stage: String
    /// The version that held the stage before, if any.
    public var from: String?
    /// The version asked for.
    public var to: String
    /// "ok", or "refused: " and why.
    public var outcome: String
    /// Why the person moved the stage (`--reason`), when they said.
    public var reason: String?

    var json: JSONValue {
        var o: [String: JSONValue] = ["time": .string(time), "by": .string(by), "action": .string(action), "stage": .string(stage),
                                      "from": from.map { .string($0) } ?? .null, "to": .string(to), "outcome": .string(outcome)]
        if let reason { o["reason"] = .string(reason) }
        return .object(o)
    }

    /// A record from its fields.
    public init(time: String, by: String, action: String, stage: String, from: String?, to: String, outcome: String, reason: String? = nil) {
        self.time = time; self.by = by; self.action = action; self.stage = stage; self.from = from; self.to = to; self.outcome = outcome
        self.reason = reason
    }

    init?(_ v: JSONValue) {
        guard let stage = v["stage"]?.stringValue, let to = v["to"]?.stringValue else { return nil }
        self.init(time: v["time"]?.stringValue ?? "", by: v["by"]?.stringValue ?? "", action: v["action"]?.stringValue ?? "",
                  stage: stage, from: v["from"]?.stringValue, to: to, outcome: v["outcome"]?.stringValue ?? "",
                  reason: v["reason"]?.stringValue)
    }
}

/// A per-model gate policy: for each stage, metric thresholds a version must meet.
public struct PromotionPolicy: Sendable, Equatable {
    /// One threshold: metric, comparison, value.
    public struct Gate: Sendable, Equatable {
        /// The metric's name.
        public var metric: String
        /// The comparison: >=, >, <=, < or ==.
        public var op: String
        /// The threshold.
        public var value: Double
        /// The threshold as written.
        public var text: String

        func holds(_ v: Double) -> Bool {
            switch op {
            case ">=": return v >= value
            case ">": return v > value
            case "<=": return v <= value
            case "<": return v < value
            default: return v == value
            }
        }
    }

    /// Gates by stage.
    public var gates: [String: [Gate]] = [:]

    /// Parses "production: accuracy >= 0.93, f1 >= 0.9; staging: accuracy >= 0.9" (stages may
    /// also be separated by newlines).
    public init(parsing text: String) throws {
        func bad(_ m: String) -> SLMError { .argument("invalid policy: \(m) (expected e.g. 'production: accuracy >= 0.93, f1 >= 0.9')") }
        for clause in text.split(whereSeparator: { $0 == ";" || $0 == "\n" }) {
            let c = clause.trimmingCharacters(in: .whitespaces)
            if c.isEmpty || c.hasPrefix("#") { continue }
            guard let colon = c.firstIndex(of: ":") else { throw bad("\"\(c)\" has no 'stage:'") }
            let stage = c[..<colon].trimmingCharacters(in: .whitespaces)
            guard ["production", "staging"].contains(stage) else { throw bad("unknown stage \"\(stage)\" (gates apply to production and staging)") }
            var list: [Gate] = []
            for cond in c[c.index(after: colon)...].split(separator: ",") {
                let t = cond.trimmingCharacters(in: .whitespaces)
                guard let opRange = [">=", "<=", "==", ">", "<"].lazy.compactMap({ t.range(of: $0) }).first else {
                    throw bad("\"\(t)\" has no comparison (>=, >, <=, <, ==)")
                }
                let metric = t[..<opRange.lowerBound].trimmingCharacters(in: .whitespaces)
                let number = t[opRange.upperBound...].trimmingCharacters(in: .whitespaces)
                guard !metric.isEmpty, metric.allSatisfy({ $0.isLetter || $0.isNumber || "_-.".contains($0) }) else { throw bad("bad metric name in \"\(t)\"") }
                guard let v = Double(number), v.isFinite else { throw bad("\"\(number)\" is not a number") }
                list.append(Gate(metric: metric, op: String(t[opRange]), value: v, text: number))
            }
            guard !list.isEmpty else { throw bad("stage \(stage) has no conditions") }
            gates[stage, default: []] += list
        }
    }

    /// A policy with no gates.
    public init() {}

    /// The policy as `policy set` takes it ("production: accuracy >= 0.9, ...; staging: ...").
    public var text: String {
        gates.keys.sorted().map { s in "\(s): " + gates[s]!.map { "\($0.metric) \($0.op) \($0.text)" }.joined(separator: ", ") }.joined(separator: "; ")
    }
}

/// How a stage may be moved: which checks to waive, and the reason to record.
public struct PromoteOptions: Sendable {
    /// Allow production from a version that never held staging.
    public var skipStaging = false
    /// Allow a move to a new major version.
    public var allowBreaking = false
    /// Recorded in the history with the move.
    public var reason: String?
    /// Runs after the gates are checked and before the stage is locked and moved: tests widen
    /// the window there to prove that a stage moved meanwhile is detected.
    public var beforeCommit: (@Sendable () -> Void)?
    /// The defaults: every check applies.
    public init() {}
}

extension Store {
    func registryPath(_ name: ModelName) -> String { "\(registryDirectory)/\(name.value)" }
    func metricsPath(_ name: ModelName, _ version: SemVer) -> String { "\(registryPath(name))/@metrics/\(version.description).jsonl" }
    func historyPath(_ name: ModelName) -> String { "\(registryPath(name))/@history.jsonl" }
    func policyPath(_ name: ModelName) -> String { "\(registryPath(name))/@policy" }

    /// Appends one canonical-JSON line to an append-only log (rewritten whole, atomically).
    public func appendRecord(_ record: JSONValue, to path: String) throws {
        let existing = FileSystem.exists(path) ? try FileSystem.readFile(path, limit: 64 << 20) : []
        try FileSystem.makeDirectories(FileSystem.dirname(path))
        try FileSystem.writeAtomically(existing + record.canonicalBytes() + [0x0a], to: path)
    }

    func readRecords(_ path: String) throws -> [JSONValue] {
        guard FileSystem.exists(path) else { return [] }
        let text = String(decoding: try FileSystem.readFile(path, limit: 64 << 20), as: UTF8.self)
        return try text.split(separator: "\n").map { line in
            do { return try JSONValue.parse(String(line)) } catch { throw SLMError.damaged(path: path, problem: "bad record").caused(by: error) }
        }
    }

    // MARK: Metrics

    /// Records `values` for version `r` (appended to its metrics log); `source` says where they
    /// came from.
    public func addMetrics(_ r: ResolvedVersion, values: [String: JSONValue], source: String) throws -> MetricRecord {
        guard !values.isEmpty else { throw SLMError.argument("metrics set: give at least one key=value") }
        let record = MetricRecord(time: Timestamp.now(), by: Identity.current(), source: source, values: values)
        let lock = try refsLock()
        defer { lock.unlock() }
        try appendRecord(record.json, to: metricsPath(r.name, r.version))
        return record
    }

    /// Every metrics record of `name@version`, oldest first.
    public func metricHistory(_ name: ModelName, _ version: SemVer) throws -> [MetricRecord] {
        try readRecords(metricsPath(name, version)).compactMap(MetricRecord.init)
    }

    /// The latest value of each metric.
    public func latestMetrics(_ name: ModelName, _ version: SemVer) throws -> [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        for r in try metricHistory(name, version) { for (k, v) in r.values { out[k] = v } }
        return out
    }

    // MARK: Policy

    /// The model's promotion policy (none: no gates).
    public func policy(of name: ModelName) throws -> PromotionPolicy {
        guard FileSystem.exists(policyPath(name)) else { return PromotionPolicy() }
        let text = String(decoding: try FileSystem.readFile(policyPath(name), limit: 1 << 20), as: UTF8.self)
        do { return try PromotionPolicy(parsing: text) } catch { throw SLMError.damaged(path: policyPath(name), problem: "promotion policy").caused(by: error) }
    }

    /// Replaces the model's promotion policy.
    public func setPolicy(of name: ModelName, _ policy: PromotionPolicy) throws {
        guard !(try versions(of: name)).isEmpty else { throw SLMError.notFound("unknown model \(name)") }
        let lock = try refsLock()
        defer { lock.unlock() }
        try FileSystem.makeDirectories(registryPath(name))
        try FileSystem.writeAtomically(Array((policy.text + "\n").utf8), to: policyPath(name))
    }

    // MARK: Stages

    /// The model's registry history, oldest first.
    public func history(of name: ModelName) throws -> [HistoryRecord] {
        try readRecords(historyPath(name)).compactMap(HistoryRecord.init)
    }

    /// The version that holds `stage` of `name`, if any.
    public func stageHolder(_ name: ModelName, _ stage: String) throws -> (SemVer, SHA256Digest)? {
        guard let id = try readRef(at: stageRefPath(name, stage)) else { return nil }
        return (try readVersion(id).version, id)
    }

    /// The metric thresholds of `stage` that `r`'s latest metrics fail (empty: every gate passes).
    public func metricGateFailures(_ r: ResolvedVersion, stage: String) throws -> [String] {
        var failures: [String] = []
        let metrics = try latestMetrics(r.name, r.version)
        for gate in try policy(of: r.name).gates[stage] ?? [] {
            guard let v = metrics[gate.metric] else {
                failures.append("metric \(gate.metric) is not recorded (gate: \(gate.metric) \(gate.op) \(gate.text))")
                continue
            }
            guard case let .number(text) = v, let d = Double(text) else {
                failures.append("metric \(gate.metric) = \(v.canonicalString()) is not a number (gate: \(gate.metric) \(gate.op) \(gate.text))")
                continue
            }
            if !gate.holds(d) { failures.append("\(gate.metric) = \(text) fails \(gate.metric) \(gate.op) \(gate.text)") }
        }
        return failures
    }

    /// Why `r` may not take `stage` (empty: every gate passes).
    public func gateFailures(_ r: ResolvedVersion, stage: String, options: PromoteOptions) throws -> [String] {
        try gateChecks(r, stage: stage, options: options).map(\.reason)
    }

    /// The refusal of `action` ("promote", "roll out") of `r` to `stage`, with a remedy for each
    /// gate an option can lift; nil when every gate passes.
    public func gateRefusal(_ r: ResolvedVersion, stage: String, options: PromoteOptions, action: String) throws -> SLMError? {
        let failures = try gateChecks(r, stage: stage, options: options)
        guard !failures.isEmpty else { return nil }
        let refusal = SLMError.conflict("cannot \(action) \(r.name)@\(r.version) to \(stage): " + failures.map(\.reason).joined(separator: "; "))
        return failures.compactMap(\.remedy).reduce(refusal) { $0.remedied(by: $1) }
    }

    /// A gate `r` fails, and the option that lifts it if one does.
    private typealias GateFailure = (reason: String, remedy: SLMError.Remedy?)

    private func gateChecks(_ r: ResolvedVersion, stage: String, options: PromoteOptions) throws -> [GateFailure] {
        var failures: [GateFailure] = try metricGateFailures(r, stage: stage).map { ($0, nil) }
        if stage == "production" && !options.skipStaging {
            let staging = try stageHolder(r.name, "staging")
            if staging?.1 != r.id {
                failures.append(("production must come from staging, which holds \(staging.map { $0.0.description } ?? "nothing")", .skipStaging))
            }
        }
        if stage == "production", !options.allowBreaking, let (current, _) = try stageHolder(r.name, "production"),
           current.major != r.version.major {
            failures.append(("\(current) -> \(r.version) changes the major version, a breaking change by SemVer", .allowBreaking))
        }
        for dep in r.object.dependencies {
            do { _ = try resolveSelector(name: try ModelName(dep.name), selector: dep.range) } catch {
                failures.append(("dependency \(dep.name)@\(dep.range) does not resolve in this store (\(error))", nil))
            }
        }
        return failures
    }

    /// Moves `stage` to `r` if every gate passes and nobody moved the stage meanwhile. Every
    /// attempt, accepted or refused, is appended to the model's history.
    public func promote(_ r: ResolvedVersion, to stage: String, options: PromoteOptions = PromoteOptions()) throws -> HistoryRecord {
        guard VersionSelector.stages.contains(stage), stage != "development" else {
            throw SLMError.argument("unknown stage \"\(stage)\": promote to staging, production or archived (development is every version not promoted)")
        }
        let expected = try stageHolder(r.name, stage)
        let gateRefusal = try self.gateRefusal(r, stage: stage, options: options, action: "promote")
        options.beforeCommit?()
        let lock = try refsLock()
        defer { lock.unlock() }
        let now = try stageHolder(r.name, stage)
        var record = HistoryRecord(time: Timestamp.now(), by: Identity.current(), action: "promote", stage: stage,
                                   from: now?.0.description, to: r.version.description, outcome: "ok", reason: options.reason)
        var refusal: SLMError? = nil
        if now?.1 != expected?.1 {
            refusal = .conflict("\(r.name)@\(stage) moved to \(now.map { $0.0.description } ?? "nothing") while this promote ran; nothing changed (try again)")
        } else if let gateRefusal {
            refusal = gateRefusal
        } else if now?.1 == r.id {
            refusal = .conflict("\(r.name)@\(r.version) already holds \(stage)")
        }
        if let refusal {
            record.outcome = "refused: \(refusal.kind.description)"
            try appendRecord(record.json, to: historyPath(r.name))
            throw refusal
        }
        try writeRef(at: stageRefPath(r.name, stage), id: r.id)
        try appendRecord(record.json, to: historyPath(r.name))
        // A version moves through the stages (development, staging, production): promoted on,
        // it leaves staging, which waits empty for the next candidate.
        if stage != "staging", let held = try stageHolder(r.name, "staging"), held.1 == r.id {
            FileSystem.remove(stageRefPath(r.name, "staging"))
            try FileSystem.syncDirectory((stageRefPath(r.name, "staging") as NSString).deletingLastPathComponent)
            let left = HistoryRecord(time: record.time, by: record.by, action: "leave", stage: "staging", from: r.version.description,
                                     to: "", outcome: "ok", reason: "promoted to \(stage)")
            try appendRecord(left.json, to: historyPath(r.name))
        }
        return record
    }

    /// Moves `stage` back to the version that held it before the current holder.
    public func rollback(_ name: ModelName, stage: String, reason: String? = nil) throws -> HistoryRecord {
        guard ["production", "staging", "archived"].contains(stage) else { throw SLMError.argument("unknown stage \"\(stage)\"") }
        let lock = try refsLock()
        defer { lock.unlock() }
        guard let (current, _) = try stageHolder(name, stage) else { throw SLMError.notFound("\(name) has no version in \(stage) to roll back") }
        // Replay the accepted moves as a stack: a promote pushes, a rollback pops.
        var stack: [String] = []
        for m in try history(of: name) where m.stage == stage && m.outcome == "ok" && m.action != "leave" {
            if m.action == "rollback" {
                if !stack.isEmpty { stack.removeLast() }
            } else {
                if stack.isEmpty, let from = m.from { stack.append(from) }
                stack.append(m.to)
            }
        }
        let previous: String? = stack.count >= 2 && stack.last == current.description ? stack[stack.count - 2] : nil
        guard let prevText = previous, let prevVersion = SemVer(parsing: prevText),
              let prevID = try readRef(at: versionRefPath(name, prevVersion)) else {
            throw SLMError.notFound("\(name)@\(stage) (\(current)) has no previous holder to roll back to")
        }
        try writeRef(at: stageRefPath(name, stage), id: prevID)
        let record = HistoryRecord(time: Timestamp.now(), by: Identity.current(), action: "rollback", stage: stage,
                                   from: current.description, to: prevText, outcome: "ok", reason: reason)
        try appendRecord(record.json, to: historyPath(name))
        return record
    }

    // MARK: Dependencies

    /// `add` with the registry's checks first: the card has the store's required keys and every
    /// dependency resolves without a cycle. Nothing is written when a check fails.
    public func addVersion(name: ModelName, version: SemVer, inputs: [AddInput], options: AddOptions) throws -> AddResult {
        if let card = options.card { try ModelCard.validate(card, required: try requiredCardKeys(), source: "model card") }
        var options = options
        options.dependencies = try Dependency.canonical(options.dependencies)
        try checkDependencies(of: name, options.dependencies)
        return try add(name: name, version: version, inputs: inputs, options: options)
    }

    /// Checks dependencies for a new version of `name`: each resolves in this store, and the
    /// graph reached from them does not lead back to `name`.
    public func checkDependencies(of name: ModelName, _ deps: [Dependency]) throws {
        var seen = Set<SHA256Digest>()
        func walk(_ deps: [Dependency], path: [String]) throws {
            for d in deps {
                let depName = try ModelName(d.name)
                if depName == name {
                    throw SLMError.argument("dependency cycle: \((path + ["\(d.name)@\(d.range)"]).joined(separator: " -> "))")
                }
                let resolved: ResolvedVersion
                do { resolved = try resolveSelector(name: depName, selector: d.range).resolved } catch let e as SLMError {
                    throw SLMError.notFound("dependency \(d.name)@\(d.range) resolves to nothing in this store: \(e.description)")
                }
                guard seen.insert(resolved.id).inserted else { continue }
                try walk(resolved.object.dependencies, path: path + ["\(resolved.name)@\(resolved.version)"])
            }
        }
        try walk(deps, path: [name.value])
    }
}

extension Store {
    /// Stage name -> version id for one model.
    public func stageRefs(of model: ModelName) throws -> [(String, SHA256Digest)] {
        let dir = "\(modelDirectory(model))/@stages"
        guard FileSystem.isDirectory(dir) else { return [] }
        var out: [(String, SHA256Digest)] = []
        for name in try FileSystem.listDirectory(dir) where !name.hasPrefix(".") {
            if let id = try readRef(at: "\(dir)/\(name)") { out.append((name, id)) }
        }
        return out
    }
}
