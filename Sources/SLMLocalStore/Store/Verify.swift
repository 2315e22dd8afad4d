// `verify`: re-read and re-hash everything in a store (pack indexes, every chunk, objects, refs)
// and name every version and file that damage reaches.

import SLMFormats
import Foundation

/// What `verify` found: counts, problems, damaged chunks and the versions they hurt.
public struct VerifyReport: Sendable {
    /// A file that is not what the format says it must be.
    public struct Problem: Sendable {
        /// The file.
        public var path: String
        /// What is wrong with it.
        public var message: String
    }
    /// A file of a version that cannot be rebuilt because of a damaged or missing chunk.
    public struct Hurt: Sendable {
        /// NAME@VERSION.
        public var version: String
        /// The file's path in the version.
        public var file: String
        /// The chunk's id in hex.
        public var chunk: String
        /// Why the chunk cannot serve.
        public var reason: String
    }

    /// Packs checked.
    public var packs = 0
    /// Chunk records checked.
    public var chunks = 0
    /// Raw bytes of the chunks checked.
    public var chunkBytes: UInt64 = 0
    /// Versions whose files were checked.
    public var versions = 0
    /// Files that are damaged or inconsistent.
    public var problems: [Problem] = []
    /// Ids of chunks whose records do not decode to their id.
    public var damagedChunks: [String] = []
    /// What the damaged or missing chunks take down.
    public var hurtVersions: [Hurt] = []
    /// Remarks that are not problems (say, a pack an interrupted write left without an index).
    public var notes: [String] = []
    /// Each damaged record by pack: what `dropDamagedRecords` takes out of the pack indexes.
    public var damagedRecords: [PackID: Set<ChunkID>] = [:]

    /// Whether nothing is wrong.
    public var ok: Bool { problems.isEmpty && damagedChunks.isEmpty && hurtVersions.isEmpty }
}

extension Store {
    /// Checks every pack record (decoded, hashed against its id), every object and every ref, and
    /// which versions any damage hurts. Reads everything; changes nothing.
    public func verify(progress: (@Sendable (UInt64, UInt64) -> Void)? = nil) throws -> VerifyReport {
        var report = VerifyReport()
        // One pack index in memory at a time; lookups (delta bases, the version pass) go through
        // the store's index, which searches the multi-pack index on disk for the packs it covers.
        let index = try loadChunkIndex(skippingDamaged: true)
        let packs = try packIDs().sorted()
        for name in try FileSystem.listDirectory(packsDirectory) where name.hasSuffix(".pack") {
            let hex = String(name.dropLast(5))
            if let pid = PackID(hex: hex), !FileSystem.exists(packIndexPath(pid)) {
                report.notes.append("\(packsDirectory)/\(name): pack without index (left by an interrupted write; ignored, removed by gc)")
            }
        }
        let multiPack = try checkMultiPackIndex()
        report.problems += multiPack.problems.map { .init(path: multiPackIndexPath, message: $0) }
        report.notes += multiPack.notes
        let damaged = try verifyPacks(packs, index: index, into: &report, progress: progress)
        try verifyVersions(index: index, damaged: damaged, into: &report)
        try verifyRecords(into: &report)
        return report
    }

    /// The records beside the versions: every delta set file, and every model's rollout
    /// records, history, policy and metrics. Readers skip or refuse a damaged one; verify names it.
    func verifyRecords(into report: inout VerifyReport) throws {
        func check(_ path: String, _ body: () throws -> Void) {
            do { try body() } catch let e as SLMError where !e.isTransient {
                // The message names the file already; the problem's path says it once.
                let text = e.description
                report.problems.append(.init(path: path, message: text.hasPrefix(path + ": ") ? String(text.dropFirst(path.count + 2)) : text))
            } catch {
                report.problems.append(.init(path: path, message: "\(error)"))
            }
        }
        if FileSystem.isDirectory(deltasDirectory) {
            for name in try FileSystem.listDirectory(deltasDirectory) where !name.hasPrefix(".") {
                let path = "\(deltasDirectory)/\(name)"
                check(path) {
                    guard DeltaSet.parseFileName(name) != nil else { throw SLMError.damaged(path: path, problem: "not a delta set file name (<target id>.<base id>)") }
                    let set = try DeltaSet.decode(try FileSystem.readFile(path, limit: DeltaSet.maxEncodedSize), source: path)
                    guard set.fileName == name else { throw SLMError.damaged(path: path, problem: "names target and base other than its file name") }
                }
            }
        }
        for name in try registryModels() {
            for stage in ["staging", "production", "archived"] {
                check(rolloutPath(name, stage)) { _ = try rollout(of: name, stage: stage) }
            }
            check(historyPath(name)) { _ = try history(of: name) }
            check(policyPath(name)) { _ = try policy(of: name) }
            let metrics = "\(registryPath(name))/@metrics"
            if FileSystem.isDirectory(metrics) {
                for file in try FileSystem.listDirectory(metrics) where file.hasSuffix(".jsonl") {
                    check("\(metrics)/\(file)") {
                        guard let v = SemVer(parsing: String(file.dropLast(6))) else {
                            throw SLMError.damaged(path: "\(metrics)/\(file)", problem: "not named by a version")
                        }
                        _ = try metricHistory(name, v)
                    }
                }
            }
        }
    }

    /// The records of the chunks of `trees` that no longer decode to their ids, by pack: what a
    /// pull of a version this store already holds drops (`dropDamagedRecords`) so that it fetches
    /// those chunks again. Reads each chunk the trees list; chunks the store lacks are skipped
    /// (a pull fetches them anyway).
    public func damagedRecords(of trees: [TreeObject]) throws -> [PackID: Set<ChunkID>] {
        let index = try loadChunkIndex(skippingDamaged: true)
        let cache = DecodedChunkCache()
        var damaged: [PackID: Set<ChunkID>] = [:]
        var buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1, alignment: 16)
        defer { buffer.deallocate() }
        for tree in trees {
            for file in tree.files {
                try file.chunks.forEach { ref in
                    guard let loc = index.location(of: ref.id) else { return }
                    if buffer.count < Int(loc.rawLength) {
                        buffer.deallocate()
                        buffer = .allocate(byteCount: Int(loc.rawLength), alignment: 16)
                    }
                    do {
                        try readChunk(ref.id, at: loc, into: buffer, index: index, cache: cache)
                    } catch let error as SLMError {
                        // A delta record whose base is gone cannot serve either.
                        switch error.kind {
                        case .damaged, .notFound: damaged[loc.pack, default: []].insert(ref.id)
                        default: throw error
                        }
                    }
                }
            }
        }
        return damaged
    }

    /// Takes the damaged records `verify` found out of their packs' indexes (the bytes stay
    /// until gc rewrites the pack), so a chunk with a sound copy in another pack reads from that
    /// copy, and one with none is missing: a pull of the versions it hurts fetches it again.
    /// Returns how many records were dropped.
    @discardableResult
    public func dropDamagedRecords(_ records: [PackID: Set<ChunkID>]) throws -> Int {
        guard !records.isEmpty else { return 0 }
        let lock = try dataLock(.exclusive)
        defer { lock.unlock() }
        var dropped = 0
        for (pack, ids) in records.sorted(by: { $0.key < $1.key }) where FileSystem.exists(packIndexPath(pack)) {
            let index = try readPackIndex(pack)
            let keep = index.entries.filter { !ids.contains($0.id) }
            guard keep.count < index.entries.count else { continue }
            dropped += index.entries.count - keep.count
            try FileSystem.writeAtomically(PackIndex(packSize: index.packSize, entries: keep).encoded(), to: packIndexPath(pack))
        }
        // The multi-pack index still lists the dropped entries: write it again from the new indexes.
        if dropped > 0, FileSystem.exists(multiPackIndexPath) { _ = try writeMultiPackIndex() }
        return dropped
    }

    /// Models with a registry directory (registry/<name>/ holding @-records), with or without versions.
    func registryModels() throws -> [ModelName] {
        var out: [ModelName] = []
        func walk(_ dir: String, _ prefix: String) throws {
            var isModel = false
            for entry in try FileSystem.listDirectory(dir) where !entry.hasPrefix(".") {
                if entry.hasPrefix("@") { isModel = true; continue }
                if FileSystem.isDirectory("\(dir)/\(entry)") { try walk("\(dir)/\(entry)", prefix.isEmpty ? entry : "\(prefix)/\(entry)") }
            }
            if isModel, let name = ModelName(parsing: prefix) { out.append(name) }
        }
        if FileSystem.isDirectory(registryDirectory) { try walk(registryDirectory, "") }
        return out.sorted()
    }

    /// Every record of every pack read and checked against its id, 256 at a time on all cores.
    /// Returns the chunks found damaged (and those of packs whose size disagrees with the index).
    func verifyPacks(_ packs: [PackID], index: ChunkIndex, into report: inout VerifyReport,
                     progress: (@Sendable (UInt64, UInt64) -> Void)?) throws -> Set<ChunkID> {
        var damaged = Set<ChunkID>()
        let totalBytes = packs.reduce(UInt64(0)) { $0 + (FileSystem.fileSize(packPath($1)) ?? 0) }
        var doneBytes: UInt64 = 0
        for pid in packs {
            let pi: PackIndex
            do {
                pi = try readPackIndex(pid)
            } catch let e as SLMError {
                report.problems.append(.init(path: packIndexPath(pid), message: e.description))
                continue
            }
            let size = FileSystem.fileSize(packPath(pid))
            guard size == pi.packSize else {
                report.problems.append(.init(path: packPath(pid), message: "pack is \(size.map(String.init) ?? "missing"), index says \(pi.packSize) bytes"))
                for e in pi.entries { damaged.insert(e.id) }
                report.damagedRecords[pid, default: []].formUnion(pi.entries.map(\.id))
                continue
            }
            report.packs += 1
            let entries = pi.entries.sorted { $0.offset < $1.offset }
            var k = 0
            while k < entries.count {
                let batch = Array(entries[k..<min(k + 256, entries.count)])
                k += batch.count
                let bad = UnsafeMutableBufferPointer<String?>.allocate(capacity: batch.count)
                bad.initialize(repeating: nil)
                defer { bad.deallocate() }
                nonisolated(unsafe) let b = bad
                DispatchQueue.concurrentPerform(iterations: batch.count) { j in
                    let e = batch[j]
                    let loc = e.location(in: pid)
                    let out = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(e.rawLength), alignment: 16)
                    defer { out.deallocate() }
                    do { try self.readChunk(e.id, at: loc, into: out, index: index) } catch { b[j] = "\(error)" }
                }
                for (j, e) in batch.enumerated() {
                    report.chunks += 1
                    report.chunkBytes += UInt64(e.rawLength)
                    doneBytes += PackFormat.recordSize(e.storedLength)
                    if let message = bad[j] {
                        damaged.insert(e.id)
                        report.damagedRecords[pid, default: []].insert(e.id)
                        report.damagedChunks.append(e.id.hex)
                        report.problems.append(.init(path: packPath(pid), message: "chunk \(e.id.hex): \(message)"))
                    }
                }
                progress?(doneBytes, totalBytes)
            }
        }
        return damaged
    }

    /// Objects and refs: every version must be readable, its tree readable, its chunks present,
    /// of the length the tree says, and not among `damaged`.
    func verifyVersions(index: ChunkIndex, damaged: Set<ChunkID>, into report: inout VerifyReport) throws {
        for model in try models() {
            for (v, id) in try versions(of: model) {
                report.versions += 1
                let label = "\(model)@\(v)"
                let tree: TreeObject
                do {
                    let version = try readVersion(id)
                    guard version.name == model.value, version.version == v else {
                        report.problems.append(.init(path: versionRefPath(model, v), message: "ref points to \(version.name)@\(version.version)"))
                        report.hurtVersions.append(.init(version: label, file: "", chunk: "", reason: "ref points to the wrong version object"))
                        continue
                    }
                    tree = try readTree(version.tree)
                } catch let e as SLMError {
                    report.problems.append(.init(path: versionRefPath(model, v), message: e.description))
                    report.hurtVersions.append(.init(version: label, file: "", chunk: "", reason: e.description))
                    continue
                }
                for f in tree.files {
                    // A tree whose chunk list cannot be read hurts its version like a missing chunk.
                    var refs = f.chunks.makeIterator()
                    while true {
                        let c: ChunkRef
                        do {
                            guard let next = try refs.next() else { break }
                            c = next
                        } catch {
                            report.hurtVersions.append(.init(version: label, file: f.path, chunk: "", reason: "\(error)"))
                            break
                        }
                        if damaged.contains(c.id) {
                            report.hurtVersions.append(.init(version: label, file: f.path, chunk: c.id.hex, reason: "damaged chunk"))
                        } else if let loc = index.location(of: c.id) {
                            if loc.rawLength != c.rawLength {
                                report.hurtVersions.append(.init(version: label, file: f.path, chunk: c.id.hex, reason: "length mismatch"))
                            } else { continue }
                        } else {
                            report.hurtVersions.append(.init(version: label, file: f.path, chunk: c.id.hex, reason: "missing chunk"))
                        }
                    }
                }
            }
        }
    }
}
