// `pull`: bring a version (and its dependencies) from a remote into the local store, fetching
// only missing chunks in few coalesced range requests, verifying every chunk before it is
// stored, then optionally install it under a directory with an atomic `current` flip.

import Foundation

public struct PullOptions: Sendable {
    /// Install into this directory (DIR/<version>/ and DIR/current).
    public var installDirectory: String?
    /// Installed versions to keep besides the current one.
    public var keep = 1
    /// Directories whose files may already hold needed chunks.
    public var seeds: [String] = []
    public var parallelRequests = 4
    /// Gaps between needed records smaller than this are read through rather than split.
    public var gapLimit: UInt64 = 256 << 10
    public var maxRangeBytes: UInt64 = 16 << 20
    /// Downloaded chunks become durable (and survive a kill) at least this often.
    public var commitEvery: UInt64 = {
        // Tests shrink the batch to exercise resume on small models.
        if let v = ProcessInfo.processInfo.environment["SLMSTORE_PULL_COMMIT_BYTES"], let n = UInt64(v), n > 0 { return n }
        return 8 << 20
    }()
    public var includeDependencies = true
    public var progress: (@Sendable (UInt64, UInt64) -> Void)?
    public var log: (@Sendable (String) -> Void)?
    /// Checked between range requests; when it returns true the pull stops (what was already
    /// verified and committed stays, so the next pull resumes).
    public var isCancelled: (@Sendable () -> Bool)?

    public init() {}
}

public struct PullResult: Sendable {
    public var name: ModelName
    public var version: SemVer
    public var versionID: SHA256Digest
    /// Every byte received from the remote during this pull (metadata and chunk ranges).
    public var bytesDownloaded: UInt64
    public var requests: Int
    public var chunksFetched: Int
    /// Record bytes of the chunks fetched: what `diff` calls bytes_to_fetch.
    public var chunkBytes: UInt64
    /// Bytes received for chunk ranges, including gaps read through.
    public var rangeBytes: UInt64
    public var metadataBytes: UInt64
    public var chunksFromSeeds: Int
    public var seconds: Double
    public var installedPath: String?
    public var installedNew: Bool
    /// Every version brought into the store (the target and its dependencies).
    public var versions: [String]
}

/// A planned range request: records of needed chunks in one pack, with small gaps read through.
struct RangePlan {
    var pack: PackID
    var range: Range<UInt64>
    var chunks: [(id: ChunkID, entry: PackIndexEntry)]
}

enum RangePlanner {
    static func plan(_ needed: [(ChunkID, PackID, PackIndexEntry)], gapLimit: UInt64, maxRange: UInt64) -> [RangePlan] {
        var byPack: [PackID: [(ChunkID, PackIndexEntry)]] = [:]
        for (id, pack, e) in needed { byPack[pack, default: []].append((id, e)) }
        var plans: [RangePlan] = []
        for (pack, items) in byPack.sorted(by: { $0.key < $1.key }) {
            var current: RangePlan? = nil
            for (id, e) in items.sorted(by: { $0.1.offset < $1.1.offset }) {
                let r = e.recordRange
                if var c = current, r.lowerBound >= c.range.upperBound, r.lowerBound - c.range.upperBound <= gapLimit,
                   r.upperBound - c.range.lowerBound <= maxRange {
                    c.range = c.range.lowerBound..<r.upperBound
                    c.chunks.append((id, e))
                    current = c
                } else {
                    if let c = current { plans.append(c) }
                    current = RangePlan(pack: pack, range: r, chunks: [(id, e)])
                }
            }
            if let c = current { plans.append(c) }
        }
        return plans
    }
}

extension Store {
    public var remoteIndexCache: String { root + "/cache/pack-indexes" }

    /// Resolves a reference against a remote: exact versions by their ref file, anything else
    /// (stages, ranges, `latest`, ids) through the manifest.
    public func resolveRemote(_ ref: VersionRef, reader: RemoteReader) throws -> (ModelName, SemVer, SHA256Digest) {
        switch ref {
        case let .exact(name, version):
            if let id = try reader.versionRef(name, version) { return (name, version, id) }
            let known = (try? reader.manifest())?.models[name.value]?.versions.map(\.version) ?? []
            throw SLMError.notFound("\(reader.remote.location) has no \(name)@\(version)\(known.isEmpty ? "" : "; versions there: " + known.joined(separator: ", "))")
        case let .selector(name, selector):
            let manifest = try reader.manifest()
            guard let model = manifest.models[name.value] else { throw SLMError.notFound("\(reader.remote.location) has no model \(name)") }
            let versions = model.versions.compactMap { try? SemVer($0.version) }
            var holders: [String: SemVer] = [:]
            for (stage, v) in model.stages { if let sv = try? SemVer(v) { holders[stage] = sv } }
            let (v, _) = try VersionSelector.pick(selector, versions: versions, stageHolders: holders)
            let id = model.versions.first { $0.version == v.description }!.id
            return (name, v, id)
        case let .id(prefix):
            let manifest = try reader.manifest()
            var hits: [(ModelName, SemVer, SHA256Digest)] = []
            for (name, m) in manifest.models {
                for v in m.versions where v.id.hex.hasPrefix(prefix) {
                    if let n = try? ModelName(name), let sv = try? SemVer(v.version) { hits.append((n, sv, v.id)) }
                }
            }
            guard hits.count == 1 else {
                throw hits.isEmpty ? SLMError.notFound("\(reader.remote.location) has no version id starting with \(prefix)")
                                   : SLMError.argument("version id prefix \(prefix) is ambiguous on \(reader.remote.location)")
            }
            return hits[0]
        }
    }

    public func pull(from remote: RemoteStore, ref: VersionRef, options: PullOptions = PullOptions()) throws -> PullResult {
        let started = Timestamp.monotonicSeconds()
        let reader = RemoteReader(remote: remote, cacheDirectory: remoteIndexCache)
        let remoteConfig = try reader.config()
        let (name, version, versionID) = try resolveRemote(ref, reader: reader)

        // 1. The version and its dependencies: objects fetched and verified.
        var wanted: [(ModelName, SemVer, SHA256Digest, VersionObject, TreeObject)] = []
        var queue = [(name, version, versionID)]
        var seen = Set<SHA256Digest>()
        var manifest: Manifest? = nil
        while let (n, v, id) = queue.first {
            queue.removeFirst()
            guard seen.insert(id).inserted else { continue }
            let object = try reader.version(id)
            guard object.name == n.value, object.version == v else {
                throw SLMError.remote(url: remote.location, problem: "ref \(n)@\(v) points to a version object for \(object.name)@\(object.version)")
            }
            let tree = try reader.tree(object.tree)
            wanted.append((n, v, id, object, tree))
            if options.includeDependencies {
                for dep in object.dependencies {
                    let depName = try ModelName(dep.name)
                    if manifest == nil { manifest = try reader.manifest() }
                    let (dn, dv, did) = try resolveRemote(.selector(depName, dep.range), reader: reader)
                    queue.append((dn, dv, did))
                }
            }
            if seen.count > 256 { throw SLMError.remote(url: remote.location, problem: "more than 256 versions in the dependency graph") }
        }

        let dataLock = try self.dataLock(.shared)
        defer { dataLock.unlock() }
        removeAbandonedWorkingDirectories()
        var index = try loadChunkIndex()
        var needed = Set<ChunkID>()
        for w in wanted { for f in w.4.files { for c in f.chunks where !index.contains(c.id) { needed.insert(c.id) } } }

        // 2. Seeds: files already on disk (explicit, or the installed current version).
        var seeds = options.seeds
        if let dir = options.installDirectory, FileSystem.isDirectory(dir + "/current") { seeds.append(dir + "/current") }
        var fromSeeds = 0
        if !needed.isEmpty && !seeds.isEmpty {
            let work = try makeWorkingDirectory("seed")
            defer { work.remove() }
            let ingester = ChunkIngester(store: self, existing: index, directory: work.path, packTargetSize: 256 << 20,
                                         chunker: remoteConfig.chunker, wanted: needed)
            for seed in seeds where FileSystem.isDirectory(seed) {
                for input in (try? AddInputs.collectLenient(seed)) ?? [] {
                    _ = try? ingester.ingest(input) { _ in }
                }
            }
            let packs = try ingester.finish()
            try commitPacks(packs)
            fromSeeds = ingester.newChunks
            options.log?("reused \(ingester.newChunks) chunks from files on disk")
            index = try loadChunkIndex()
            needed = needed.filter { !index.contains($0) }
        }

        // 3. Locate the missing chunks in the remote's pack indexes and plan range requests.
        var located: [(ChunkID, PackID, PackIndexEntry)] = []
        if !needed.isEmpty {
            if manifest == nil { manifest = try reader.manifest() }
            var packs: [PackID] = []
            for w in wanted {
                if let e = manifest!.models[w.0.value]?.versions.first(where: { $0.id == w.2 }) { packs += e.packs }
            }
            if packs.isEmpty { packs = manifest!.packs }
            var remaining = needed
            for pack in Set(packs).sorted() where !remaining.isEmpty {
                let pi = try reader.packIndex(pack)
                for e in pi.entries where remaining.contains(e.id) {
                    located.append((e.id, pack, e))
                    remaining.remove(e.id)
                }
            }
            if !remaining.isEmpty && Set(packs) != Set(manifest!.packs) {
                for pack in manifest!.packs where !remaining.isEmpty && !packs.contains(pack) {
                    let pi = try reader.packIndex(pack)
                    for e in pi.entries where remaining.contains(e.id) {
                        located.append((e.id, pack, e))
                        remaining.remove(e.id)
                    }
                }
            }
            guard remaining.isEmpty else {
                throw SLMError.remote(url: remote.location, problem: "\(remaining.count) chunks of \(name)@\(version) are in no pack the remote lists (e.g. \(remaining.first!.hex))")
            }
        }
        let sizes = Dictionary(wanted.flatMap { $0.4.files.flatMap { $0.chunks.map { ($0.id, $0.rawLength) } } }, uniquingKeysWith: { a, _ in a })
        for (id, _, e) in located where sizes[id] != e.rawLength {
            throw SLMError.remote(url: remote.location, problem: "chunk \(id.hex) is \(e.rawLength) bytes in the pack index but \(sizes[id] ?? 0) in the tree")
        }
        let plans = RangePlanner.plan(located, gapLimit: options.gapLimit, maxRange: options.maxRangeBytes)
        let chunkBytes = located.reduce(UInt64(0)) { $0 + PackFormat.recordSize($1.2.storedLength) }

        // 4. Fetch, verify, store.
        let fetcher = try ChunkFetcher(store: self, remote: remote, plans: plans, commitEvery: options.commitEvery,
                                       progressTotal: chunkBytes, progress: options.progress, isCancelled: options.isCancelled)
        try fetcher.run(parallel: options.parallelRequests)
        index = try loadChunkIndex()
        for w in wanted {
            for f in w.4.files {
                for c in f.chunks where !index.contains(c.id) {
                    throw SLMError.failed("chunk \(c.id.hex) of \(w.0)@\(w.1) is still missing after the pull")
                }
            }
        }

        // 5. Objects and refs, dependencies first.
        for w in wanted.reversed() {
            try writeObject(w.4.encoded())
            try writeObject(w.3.encoded())
        }
        do {
            let refs = try refsLock()
            defer { refs.unlock() }
            for w in wanted.reversed() {
                let path = versionRefPath(w.0, w.1)
                if let existing = try readRef(at: path) {
                    guard existing == w.2 else {
                        throw SLMError.conflict("local \(w.0)@\(w.1) is version \(existing.hex.prefix(12)) but the remote's is \(w.2.hex.prefix(12)); versions are immutable")
                    }
                } else {
                    try writeRef(at: path, id: w.2)
                }
            }
        }

        // 6. Install.
        var installed: String? = nil
        var installedNew = false
        if let dir = options.installDirectory {
            let target = wanted[0]
            let install = InstallDirectory(root: dir)
            installedNew = try install.install(store: self, tree: target.4, version: target.1.description, id: target.2,
                                               label: "\(target.0)@\(target.1)")
            try install.switchCurrent(to: target.1.description)
            install.prune(keep: options.keep)
            installed = install.path(of: target.1.description)
        }
        return PullResult(name: name, version: version, versionID: versionID, bytesDownloaded: remote.bytesReceived,
                          requests: remote.requests, chunksFetched: located.count, chunkBytes: chunkBytes,
                          rangeBytes: fetcher.rangeBytes, metadataBytes: reader.metadataBytes,
                          chunksFromSeeds: fromSeeds, seconds: Timestamp.monotonicSeconds() - started,
                          installedPath: installed, installedNew: installedNew,
                          versions: wanted.map { "\($0.0)@\($0.1)" })
    }
}

/// Runs the planned range requests on several threads, verifies every record, and appends the
/// verified chunks to packs that are committed as they fill, so an interrupted pull resumes.
final class ChunkFetcher: @unchecked Sendable {
    let store: Store
    let remote: RemoteStore
    let plans: [RangePlan]
    let commitEvery: UInt64
    let progressTotal: UInt64
    let progress: (@Sendable (UInt64, UInt64) -> Void)?
    let isCancelled: (@Sendable () -> Bool)?

    private let lock = NSLock()
    private var next = 0
    private var failure: Error?
    private var writer: PackWriter?
    private let work: WorkingDirectory
    private var done: UInt64 = 0
    private(set) var rangeBytes: UInt64 = 0

    init(store: Store, remote: RemoteStore, plans: [RangePlan], commitEvery: UInt64, progressTotal: UInt64,
         progress: (@Sendable (UInt64, UInt64) -> Void)?, isCancelled: (@Sendable () -> Bool)? = nil) throws {
        self.isCancelled = isCancelled
        self.store = store
        self.remote = remote
        self.plans = plans
        self.commitEvery = commitEvery
        self.progressTotal = progressTotal
        self.progress = progress
        work = try store.makeWorkingDirectory("pull")
    }

    func run(parallel: Int) throws {
        defer { work.remove() }
        guard !plans.isEmpty else { return }
        let group = DispatchGroup()
        for _ in 0..<max(1, min(parallel, plans.count)) {
            group.enter()
            Thread.detachNewThread { [self] in
                defer { group.leave() }
                worker()
            }
        }
        group.wait()
        lock.lock()
        defer { lock.unlock() }
        // Verified chunks are kept even when the pull fails, so the next attempt resumes.
        let committed = Result { try commitLocked() }
        if let failure { throw failure }
        try committed.get()
    }

    private func worker() {
        while true {
            lock.lock()
            if failure == nil, isCancelled?() == true { failure = SLMError.failed("interrupted") }
            if failure != nil || next >= plans.count { lock.unlock(); return }
            let plan = plans[next]
            next += 1
            lock.unlock()
            do {
                try fetch(plan)
            } catch {
                lock.lock()
                if failure == nil { failure = error }
                lock.unlock()
                return
            }
        }
    }

    private func fetch(_ plan: RangePlan) throws {
        let path = "packs/\(plan.pack.hex).pack"
        let body = try remote.fetchRange(path, range: plan.range)
        var verified: [(ChunkID, PackIndexEntry, EncodedChunk)] = []
        var scratch = [UInt8](repeating: 0, count: 0)
        for (id, e) in plan.chunks {
            let start = Int(e.offset - plan.range.lowerBound)
            let end = start + PackFormat.recordHeaderSize + Int(e.storedLength)
            let record = Array(body[start..<end])
            if scratch.count < Int(e.rawLength) { scratch = [UInt8](repeating: 0, count: Int(e.rawLength)) }
            let loc = e.location(in: plan.pack)
            do {
                try scratch.withUnsafeMutableBytes { out in
                    try ChunkVerifier.decodeRecord(record, expected: id, location: loc, into: out, what: "\(remote.location)/\(path)")
                }
            } catch let error as SLMError {
                if case let .corrupt(p, problem) = error { throw SLMError.remote(url: p, problem: "served bad data: \(problem)") }
                throw error
            }
            verified.append((id, e, EncodedChunk(codec: e.codec, payload: Array(record[PackFormat.recordHeaderSize...]))))
        }
        lock.lock()
        defer { lock.unlock() }
        if writer == nil { writer = try PackWriter(directory: work.path) }
        for (id, e, encoded) in verified { try writer!.append(id: id, rawLength: e.rawLength, encoded: encoded) }
        rangeBytes += UInt64(body.count)
        done += verified.reduce(0) { $0 + PackFormat.recordSize($1.1.storedLength) }
        if writer!.size >= commitEvery { try commitLocked() }
        progress?(done, progressTotal)
    }

    private func commitLocked() throws {
        guard let w = writer else { return }
        writer = nil
        if w.isEmpty { FileSystem.remove(w.packPath); return }
        _ = try w.finish()
        try store.commitPacks([w])
        CrashPoint.hit("pull-after-commit")
    }
}
