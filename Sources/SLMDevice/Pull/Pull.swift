// `pull`: bring a version (and its dependencies) from a remote into the local store, fetching
// only missing chunks in few coalesced range requests, verifying every chunk before it is
// stored, then optionally install it under a directory with an atomic `current` flip.
// Read top to bottom it is the whole flow: resolve, seed, locate, plan, fetch, publish, install.

import SLMFormats
import SLMLocalStore
import SLMRemote
import Foundation
import Synchronization

/// How to pull: where to install, seeds, transfer sizes and limits, trust, reports (the options of
/// `slmstore pull`).
public struct PullOptions: Sendable {
    /// Install into this directory (DIR/<version>/ and DIR/current).
    public var installDirectory: String?
    /// Install into a directory that holds files slmstore did not put there (refused otherwise,
    /// before anything is downloaded).
    public var installIntoForeignDirectory = false
    /// Installed versions to keep besides the current one.
    public var keep = 1
    /// Directories whose files may already hold needed chunks.
    public var seeds: [String] = []
    // The transfer and install sizes below are set by `init` from `defaultMemoryBudget`.
    /// Range requests in flight at once.
    public var parallelRequests = 4
    /// Gaps between needed records smaller than this are read through rather than split.
    public var gapLimit: UInt64 = 256 << 10
    /// The largest range one request asks for. Bodies stream into their consumer as curl
    /// receives them (a slow consumer pauses the transfer), so this bounds what one retry
    /// repeats rather than what is held.
    public var maxRangeBytes: UInt64 = 16 << 20
    /// Downloaded chunks become durable (and survive a kill) at least this often.
    public var commitEvery: UInt64 = 8 << 20
    /// Verified records a request collects before handing them to the pack writer.
    public var verifiedBatchBytes = 4 << 20
    /// Bytes the pack writer gathers per write (it holds up to three such batches).
    public var writeBatchBytes = PackWriter.defaultWriteBatchBytes
    /// Bytes decoded per batch when the version is installed (two batches in memory at once).
    public var checkoutBatchBytes = Store.checkoutBatchBytes
    /// Missing chunks planned at a time: the plan for one window (about 100 bytes a chunk) is
    /// all a pull holds of it, whatever the model's size.
    public var planWindowChunks = 8192
    /// Bring the version's dependencies too.
    public var includeDependencies = true
    /// Download delta records where the device holds their base version (smaller than full ones).
    public var useDeltas = true
    /// Called with (bytes fetched, bytes to fetch) as work advances.
    public var progress: (@Sendable (UInt64, UInt64) -> Void)?
    /// Hears what the pull does, a line at a time (for `--verbose` and the sync log).
    public var log: (@Sendable (String) -> Void)?
    /// Checked between range requests; when it returns true the pull stops (what was already
    /// verified and committed stays, so the next pull resumes).
    public var isCancelled: (@Sendable () -> Bool)?
    /// Public keys whose signed release metadata this device requires (--trust). A remote it
    /// accepted signed metadata from before is checked even when this is empty.
    public var trustedKeys: [Ed25519PublicKey] = []
    /// Refuse a version (with its dependencies) whose files add up to more than this, before
    /// downloading anything (0: no limit).
    public var maxInstallSize: UInt64 = 0
    /// Refuse a version whose new data (the bytes its files take from chunks this store lacks)
    /// is more than this many times what the pull would download, before downloading anything
    /// (0: no limit). A hostile remote can list one tiny record thousands of times; honest
    /// weights expand a few times at most (zstd, tensor deltas), so the default leaves room.
    public var maxExpansion: UInt64 = PullOptions.defaultMaxExpansion
    /// The default `maxExpansion`: new data at most 1024 times the bytes downloaded.
    public static let defaultMaxExpansion: UInt64 = 1024
    /// A release the caller accepted for this remote moments ago (the sync daemon's round): used
    /// as is instead of fetching and checking release.json again.
    public var acceptedRelease: SignedRelease?
    /// The version id an exact `NAME@VERSION` reference stands for, when the caller resolved it
    /// already (the sync daemon, from the manifest its release vouches for): the remote's ref
    /// file is not read again. The id is still checked against the release, and the version
    /// object and tree against the id.
    public var knownVersionID: SHA256Digest?

    /// The peak resident memory a pull or sync is sized for unless told otherwise: small enough
    /// to run beside a model on a device.
    public static let defaultMemoryBudget: UInt64 = 64 << 20
    /// Budgets below this are raised to it: the process alone needs most of it.
    public static let smallestMemoryBudget: UInt64 = 32 << 20
    /// What the process holds before it buffers anything (runtime, libraries, code): about
    /// 20 MiB for the static build, 25 MiB linked against the toolchain.
    static let processBaseline: UInt64 = 24 << 20

    /// The peak this pull is sized for (`applyMemoryBudget`).
    public private(set) var memoryBudget: UInt64 = 0
    /// What a pull holds for each chunk of the version besides its buffers: chunk lists are
    /// read from the tree object's file, so only a bit marking the chunks it fetches and, when
    /// it seeds from files on disk, 12 bits of filter (`PullFootprintTests` measures it).
    static let bytesPerChunk: UInt64 = 4

    /// The defaults, sized for the default memory budget.
    public init() { applyMemoryBudget(Self.defaultMemoryBudget) }

    /// Shrinks the transfer and install buffers by what a version of `chunks` chunks costs on
    /// its own, so a model with many chunks gets smaller buffers rather than a higher peak. It
    /// never enlarges anything, so explicit settings (`--parallel`) stand: the bytes in flight
    /// are what the smaller budget allows, spread over the requests there are.
    mutating func fitBudget(toChunks chunks: Int) {
        let metadata = UInt64(chunks) * Self.bytesPerChunk
        var fitted = self
        fitted.applyMemoryBudget(memoryBudget > metadata ? memoryBudget - metadata : 0)
        let inFlight = UInt64(fitted.parallelRequests) * fitted.maxRangeBytes
        maxRangeBytes = min(maxRangeBytes, max(1 << 20, inFlight / UInt64(max(1, parallelRequests))))
        gapLimit = min(gapLimit, maxRangeBytes / 8)
        verifiedBatchBytes = min(verifiedBatchBytes, fitted.verifiedBatchBytes)
        writeBatchBytes = min(writeBatchBytes, fitted.writeBatchBytes)
        checkoutBatchBytes = min(checkoutBatchBytes, fitted.checkoutBatchBytes)
    }

    /// Sizes every buffer so the process peaks near `bytes` (resident memory, the process
    /// included). What is left after `processBaseline` pays for: the install's two decode
    /// batches (a tenth each), the pack writer's three write batches and one batch of verified
    /// records per request (a fortieth each), and, from the rest, a range per request with three
    /// times as much again as margin: a body can arrive while the last one is being taken
    /// over, and the allocator keeps what threads free. Fetching and installing never overlap.
    public mutating func applyMemoryBudget(_ bytes: UInt64) {
        memoryBudget = max(bytes, Self.smallestMemoryBudget)
        let usable = max(bytes, Self.smallestMemoryBudget) - Self.processBaseline
        func clamp(_ v: UInt64, _ lo: UInt64, _ hi: UInt64) -> UInt64 { max(lo, min(hi, v)) }
        parallelRequests = usable >= 32 << 20 ? 4 : (usable >= 16 << 20 ? 2 : 1)
        checkoutBatchBytes = Int(clamp(usable / 10, 1 << 20, UInt64(Store.checkoutBatchBytes)))
        writeBatchBytes = Int(clamp(usable / 40, 512 << 10, UInt64(PackWriter.defaultWriteBatchBytes)))
        verifiedBatchBytes = Int(clamp(usable / 40, 256 << 10, 4 << 20))
        let fixed = UInt64(3 * writeBatchBytes + parallelRequests * verifiedBatchBytes)
        maxRangeBytes = clamp(usable > fixed ? (usable - fixed) / UInt64(4 * parallelRequests) : 0, 1 << 20, 16 << 20)
        gapLimit = min(256 << 10, maxRangeBytes / 8)
    }
}

/// What a pull did.
public struct PullResult: Sendable {
    /// The model pulled.
    public var name: ModelName
    /// The version pulled.
    public var version: SemVer
    /// Its version id.
    public var versionID: SHA256Digest
    /// Bytes received from the remote by this pull (metadata and chunk ranges).
    public var bytesDownloaded: UInt64
    /// Requests this pull made.
    public var requests: Int
    /// Chunk records fetched.
    public var chunksFetched: Int
    /// Record bytes of the chunks fetched: what `diff` calls bytes_to_fetch.
    public var chunkBytes: UInt64
    /// Bytes received for chunk ranges, including gaps read through.
    public var rangeBytes: UInt64
    /// Bytes received for metadata (manifest, refs, objects, pack indexes).
    public var metadataBytes: UInt64
    /// Chunks taken from seed files on disk instead of the network.
    public var chunksFromSeeds: Int
    /// Chunks rebuilt from delta records against a version this store holds.
    public var chunksFromDeltas: Int = 0
    /// Wall time.
    public var seconds: Double
    /// Wall time until the last chunk was fetched and stored (planning included, install not):
    /// the time a download rate is taken over, as a progress bar shows it.
    public var downloadSeconds: Double = 0
    /// The installed version's directory (with an install directory).
    public var installedPath: String?
    /// Whether files were written (false when the version was installed already).
    public var installedNew: Bool
    /// Every version brought into the store (the target and its dependencies).
    public var versions: [String]
    /// Packs this pull wrote: what `quarantine` may drop entries from if an install fails (the
    /// chunks it added are there, and nowhere the user's own chunks are).
    public var addedPacks: Set<PackID> = []
}

extension Store {
    /// The release checks for one remote; its record is kept in this store and, when a version
    /// is installed, beside it, so losing either does not reopen the door to a replay.
    public func releaseGate(for location: String, trusted: [Ed25519PublicKey], installDirectory: String?) -> ReleaseGate {
        let name = ReleaseGate.recordName(for: location)
        var paths = ["\(root)/trust/\(name)"]
        if let installDirectory { paths.append("\(installDirectory)/.slmstore-trust/\(name)") }
        return ReleaseGate(trusted: trusted, location: location, recordPaths: paths)
    }

    /// Resolves a reference against a remote: exact versions by their ref file, anything else
    /// (stages, ranges, `latest`, ids) through the manifest.
    public func resolveRemote(_ ref: VersionRef, reader: RemoteReader) throws -> (ModelName, SemVer, SHA256Digest) {
        let location = reader.remote.location
        switch ref {
        case let .exact(name, version):
            if let id = try reader.versionRef(name, version) { return (name, version, id) }
            var known: [String] = []
            do { known = try reader.manifest(models: [name.value]).models[name.value]?.versions.map(\.version) ?? [] } catch {
                // Only for the message: the version is missing whatever the manifest says.
            }
            throw SLMError.notFound("\(location) has no \(name)@\(version)\(known.isEmpty ? "" : "; versions there: " + known.joined(separator: ", "))")
        case let .selector(name, selector):
            let (v, id) = try RemoteSelection.select(name, selector, in: try reader.manifest(models: [name.value]), location: location)
            return (name, v, id)
        case let .id(prefix):
            var hits: [(ModelName, SemVer, SHA256Digest)] = []
            for (name, m) in try reader.manifest(models: nil).models {
                for v in m.versions where v.id.hex.hasPrefix(prefix) {
                    hits.append((try ModelName(name), try SemVer(v.version), v.id))
                }
            }
            guard hits.count == 1 else {
                throw hits.isEmpty ? SLMError.notFound("\(location) has no version id starting with \(prefix)")
                                   : SLMError.argument("version id prefix \(prefix) is ambiguous on \(location)")
            }
            return hits[0]
        }
    }

    /// The requested version and, transitively, its dependencies, each checked against its ref.
    /// Tree objects are streamed into files in `treeDirectory` and read from there: a tree is
    /// as long as its model's chunk list, and is never held whole.
    func pullTargets(_ ref: VersionRef, knownID: SHA256Digest? = nil, reader: RemoteReader, includeDependencies: Bool,
                     treeDirectory: String) throws -> [PullTarget] {
        let location = reader.remote.location
        let (name, version, versionID): (ModelName, SemVer, SHA256Digest)
        if case let .exact(n, v) = ref, let knownID {
            // The caller resolved it already (sync, from the manifest the release vouches for):
            // the ref file is not read again, but the release must still list the id.
            if let release = reader.release, !release.lists(n, v, knownID) {
                throw SLMError.untrusted(source: location, problem: "\(n)@\(v) (\(knownID.hex.prefix(12))) is not in the signed release (serial \(release.serial))")
            }
            (name, version, versionID) = (n, v, knownID)
        } else {
            (name, version, versionID) = try resolveRemote(ref, reader: reader)
        }
        var targets: [PullTarget] = []
        var queue = [(name, version, versionID)]
        var seen = Set<SHA256Digest>()
        var trees: [SHA256Digest: (FileDescriptor, TreeObject)] = [:]
        while !queue.isEmpty {
            let (n, v, id) = queue.removeFirst()
            guard seen.insert(id).inserted else { continue }
            if seen.count > 256 { throw SLMError.remote(url: location, problem: "more than 256 versions in the dependency graph") }
            let versionBytes = try reader.objectBytes(id, limit: VersionObject.maxEncodedSize)
            let object = try VersionObject.decode(versionBytes, source: "\(location)/\(RemoteLayout.objectPath(id))")
            guard object.name == n.value, object.version == v else {
                throw SLMError.remote(url: location, problem: "ref \(n)@\(v) points to a version object for \(object.name)@\(object.version)")
            }
            if trees[object.tree] == nil {
                let file = try reader.objectFile(object.tree, limit: TreeObject.maxEncodedSize, to: "\(treeDirectory)/\(object.tree.hex)")
                let tree = try TreeObject.decode(file: file, id: object.tree, source: "\(location)/\(RemoteLayout.objectPath(object.tree))")
                trees[object.tree] = (file, tree)
            }
            let (file, tree) = trees[object.tree]!
            targets.append(PullTarget(name: n, version: v, id: id, object: object, tree: tree, versionBytes: versionBytes, treeFile: file))
            guard includeDependencies else { continue }
            for dep in object.dependencies {
                let (dn, dv, did) = try resolveRemote(.selector(try ModelName(dep.name), dep.range), reader: reader)
                queue.append((dn, dv, did))
            }
        }
        return targets
    }

    /// Brings `ref` (and, by default, its dependencies) from `remote` into this store: only missing
    /// chunks, in few coalesced range requests, each verified before it is stored and committed in
    /// batches (a killed pull resumes); then installs it when `options` name an install directory.
    public func pull(from remote: any ReadableBackend, ref: VersionRef, options: PullOptions = PullOptions()) throws -> PullResult {
        var options = options
        if let dir = options.installDirectory, !options.installIntoForeignDirectory, let foreign = InstallDirectory(root: dir).foreignEntry() {
            throw SLMError.input(path: dir, problem: "is not empty and holds \"\(foreign)\", which slmstore did not put there; nothing was downloaded")
                .remedied(by: .overwrite)
        }
        let started = Timestamp.monotonicSeconds()
        let trafficBefore = remote.traffic
        let gate = releaseGate(for: remote.location, trusted: options.trustedKeys, installDirectory: options.installDirectory)
        let release = try options.acceptedRelease ?? gate.acceptRelease(of: remote)
        let reader = RemoteReader(remote: remote, cacheDirectory: remoteIndexCache(for: remote.location), release: release)
        let remoteConfig = try reader.config()

        // 1. Resolve: the version and its dependencies, objects fetched and verified. Tree objects
        // wait in a working directory (gone with the pull, whatever its outcome) and are read
        // from there through the fetch and the install, then copied into the store.
        let spilledTrees = try makeWorkingDirectory("pull-trees")
        defer { spilledTrees.remove() }
        let targets = try pullTargets(ref, knownID: options.knownVersionID, reader: reader, includeDependencies: options.includeDependencies,
                                      treeDirectory: spilledTrees.path)
        options.fitBudget(toChunks: targets.reduce(0) { n, t in t.tree.files.reduce(n) { $0 + $1.chunks.count } })
        let target = targets[0]
        try checkBounds(targets, maxChunk: remoteConfig.chunker.maxSize, location: remote.location, options: options)

        // A version this store already holds is read back first: records that no longer decode
        // to their ids leave the pack indexes, so the fetch below gets those chunks again.
        let held = targets.filter { hasObject($0.id) }
        if !held.isEmpty {
            let damaged = try damagedRecords(of: held.map(\.tree))
            if !damaged.isEmpty {
                let dropped = try dropDamagedRecords(damaged)
                options.log?("\(dropped) damaged \(dropped == 1 ? "record" : "records") of \(target.label) in this store: fetching \(dropped == 1 ? "it" : "them") again")
            }
        }

        var dataLock: FileLock? = try self.dataLock(.shared)
        defer { dataLock?.unlock() }
        removeAbandonedWorkingDirectories()
        // 2. Fetch what the store lacks, from seeds and the remote.
        let transfer = try fetchMissing(targets, reader: reader, remote: remote, chunker: remoteConfig.chunker, options: options)
        let downloadSeconds = Timestamp.monotonicSeconds() - started

        // 3. Publish: objects and refs, dependencies first.
        let newVersions = targets.filter { !hasObject($0.id) }
        do {
            let refs = try refsLock()
            defer { refs.unlock() }
            try Publication.publish(targets.reversed().map { try $0.record() }, to: LocalVersionDestination(store: self))
        }

        // 4. Install. The transfer buffers are gone: give their memory back before checkout
        // allocates its own, so the peak is the larger of the two, not their sum.
        HeapRelease.now()
        var installed: String? = nil
        var installedNew = false
        if let dir = options.installDirectory {
            let install = InstallDirectory(root: dir)
            let version = ResolvedVersion(name: target.name, version: target.version, id: target.id, object: target.object)
            installedNew = try installOrQuarantine(version, tree: target.tree, into: install, keep: options.keep, batchBytes: options.checkoutBatchBytes,
                                                   addedPacks: transfer.addedPacks,
                                                   brought: newVersions.map { ResolvedVersion(name: $0.name, version: $0.version, id: $0.id, object: $0.object) },
                                                   beforeQuarantine: { dataLock?.unlock(); dataLock = nil },
                                                   dropped: "the store and \(target.label) removed")
            installed = install.path(of: target.version.description)
            // What `status` shows for a directory `pull --to` keeps (a sync daemon keeps its own
            // state); status for people, never the source of what is installed.
            install.recordPull(PulledRecord(model: target.name.value, version: target.version.description,
                                            remote: HTTPCredentials.redact(remote.location), time: Timestamp.now()))
        }
        let traffic = remote.traffic.since(trafficBefore)
        var result = PullResult(name: target.name, version: target.version, versionID: target.id, bytesDownloaded: traffic.bytesReceived,
                                requests: traffic.requests, chunksFetched: transfer.chunksFetched, chunkBytes: transfer.chunkBytes,
                                rangeBytes: transfer.rangeBytes, metadataBytes: reader.metadataBytes,
                                chunksFromSeeds: transfer.fromSeeds, chunksFromDeltas: transfer.deltaChunks, seconds: Timestamp.monotonicSeconds() - started,
                                installedPath: installed, installedNew: installedNew,
                                versions: targets.map(\.label), addedPacks: transfer.addedPacks)
        result.downloadSeconds = downloadSeconds
        return result
    }

    /// What a pull brought into the store: the packs it wrote (from seeds and the remote: only
    /// these may be dropped again, chunks the store held before are the user's) and its counts.
    struct PullTransfer {
        var addedPacks: Set<PackID>
        var fromSeeds: Int
        var chunkBytes: UInt64
        var chunksFetched: Int
        var rangeBytes: UInt64
        var deltaChunks: Int
    }

    /// Refuses targets that would install more than `--max-install-size`, or whose trees list a
    /// chunk longer than the remote's own chunker ever cuts (a few downloaded bytes inflated into
    /// a large install), before anything is downloaded.
    func checkBounds(_ targets: [PullTarget], maxChunk: Int, location: String, options: PullOptions) throws {
        let totalSize = targets.reduce(UInt64(0)) { sum, t in t.tree.files.reduce(sum) { $0 + $1.size } }
        if options.maxInstallSize > 0 && totalSize > options.maxInstallSize {
            throw SLMError.failed("\(targets[0].label) is \(totalSize) bytes with its dependencies, over the install size limit of \(options.maxInstallSize); nothing was downloaded")
                .remedied(by: .raise(.maxInstallSize))
        }
        for t in targets {
            for f in t.tree.files where try f.chunks.contains(where: { $0.rawLength > maxChunk }) {
                throw SLMError.remote(url: "\(location)/\(RemoteLayout.objectPath(t.object.tree))",
                                      problem: "\(f.path) has a chunk longer than the store's max_size \(maxChunk)")
            }
        }
        // The repeat rule: a version's files may add up to at most `maxExpansion` times its
        // distinct chunks, whether or not any of them must be downloaded. Real models repeat few
        // chunks (zero padding); a tree listing one chunk the device holds a million times would
        // otherwise install gigabytes from nothing.
        if options.maxExpansion > 0 {
            let distinct = try PullPlan.distinctChunkBytes(targets)
            let (bound, overflow) = max(distinct, 1).multipliedReportingOverflow(by: options.maxExpansion)
            if !overflow && totalSize > bound {
                throw SLMError.remote(url: location, problem: "\(targets[0].label) would install \(totalSize) bytes from \(distinct) bytes of distinct chunks, more than \(options.maxExpansion) times as much (chunks repeated over and over); nothing was downloaded")
                    .remedied(by: .raise(.maxExpansion))
            }
        }
    }

    /// Brings every chunk the targets need into the store (under the caller's shared data lock):
    /// from seeds (files already on disk: explicit, or the installed current version) first, then
    /// from the remote, planned window by window, verified and committed as it goes so a killed
    /// pull resumes. The planning state is gone when this returns, before the install allocates.
    func fetchMissing(_ targets: [PullTarget], reader: RemoteReader, remote: any ReadableBackend, chunker: ChunkerParameters,
                      options: PullOptions) throws -> PullTransfer {
        let target = targets[0]
        var index = try loadChunkIndex()
        var addedPacks = Set<PackID>()
        let missing = try PullPlan.missingChunks(targets, have: index.contains)
        var seeds = options.seeds
        if let dir = options.installDirectory, FileSystem.isDirectory(dir + "/current") { seeds.append(dir + "/current") }
        var fromSeeds = 0
        if !missing.isEmpty && !seeds.isEmpty {
            let found = try ingestSeeds(seeds, wanted: PullPlan.seedFilter(targets, missing: missing), existing: index, chunker: chunker,
                                        blockSize: options.checkoutBatchBytes, writeBatchBytes: options.writeBatchBytes, log: options.log)
            fromSeeds = found.chunks
            addedPacks.formUnion(found.packs)
            index = try loadChunkIndex()
        }
        let windows = PullWindows(targets: targets, reader: reader, location: remote.location, missing: missing, index: index,
                                  options: options, deltaPacks: { [self] in try usableDeltaPacks(targets, manifest: $0, index: index) })
        let (chunkBytes, chunksFetched) = try windows.total()
        // One check for the download and the install together, before a byte is fetched: a
        // store and an install directory on one small filesystem must fit both.
        var writes: [(bytes: UInt64, path: String, what: String)] = [(chunkBytes, root, "to download into the store")]
        if let dir = options.installDirectory, InstallDirectory(root: dir).installedID(of: target.version.description) != target.id {
            writes.append((target.tree.totalSize, dir, "to install"))
        }
        try DiskSpace.require(writes, for: "pulling \(target.label)")
        if options.maxExpansion > 0 {
            let newBytes = try PullPlan.newDataBytes(targets, have: index.contains)
            let (bound, overflow) = max(chunkBytes, 1).multipliedReportingOverflow(by: options.maxExpansion)
            if !overflow && newBytes > bound {
                throw SLMError.remote(url: remote.location, problem: "\(target.label) would install \(newBytes) bytes of new data from \(chunkBytes) bytes downloaded, more than \(options.maxExpansion) times as much (a few records listed over and over); nothing was downloaded")
                    .remedied(by: .raise(.maxExpansion))
            }
        }
        let fetcher = try ChunkFetcher(store: self, remote: remote, baseIndex: index, commitEvery: options.commitEvery,
                                       verifiedBatchBytes: options.verifiedBatchBytes, writeBatchBytes: options.writeBatchBytes,
                                       progressTotal: chunkBytes, progress: options.progress, isCancelled: options.isCancelled)
        try fetcher.run(parallel: options.parallelRequests) { fetch in
            try windows.forEach { plans, _, _ in
                try fetch(plans)
                CrashPoint.hit("pull-after-window")
            }
        }
        // Checked against a fresh view: the fetched packs are in it now, through the multi-pack
        // index when they hold many records (read into memory they would cost more than the
        // fetch did).
        refreshMultiPackIndexIfBehind()
        if let stillMissing = try PullPlan.firstMissing(targets, have: try loadChunkIndex().contains) {
            throw SLMError.failed("chunk \(stillMissing.hex) of \(target.label) is still missing after the pull")
        }
        return PullTransfer(addedPacks: addedPacks.union(fetcher.writtenPacks), fromSeeds: fromSeeds, chunkBytes: chunkBytes,
                            chunksFetched: chunksFetched, rangeBytes: fetcher.rangeBytes, deltaChunks: fetcher.deltaChunks)
    }

    /// After a file failed its SHA-256 although every chunk passed its XXH3: a chunk id collides,
    /// most likely planted by a remote. The file's chunks leave `packs` (the packs the failed pull
    /// wrote: their index entries are dropped, gc reclaims the bytes) so no later version can be
    /// built from them, and `versions` (brought by that pull, newest first) are removed again.
    /// Entries in other packs stay: those chunks were the user's before the pull.
    public func quarantine(_ chunks: [ChunkID], from packs: Set<PackID>, versions: [ResolvedVersion]) throws {
        do {
            let lock = try dataLock(.exclusive)
            defer { lock.unlock() }
            let drop = Set(chunks)
            for pack in try packIDs() where packs.contains(pack) {
                let index = try readPackIndex(pack)
                let keep = index.entries.filter { !drop.contains($0.id) }
                if keep.count < index.entries.count {
                    try FileSystem.writeAtomically(PackIndex(packSize: index.packSize, entries: keep).encoded(), to: packIndexPath(pack))
                }
            }
            // The multi-pack index still lists the dropped entries: write it again from the new indexes.
            if FileSystem.exists(multiPackIndexPath) { _ = try writeMultiPackIndex() }
        }
        // The mismatch is the error to report; a version that cannot be removed here stays
        // unverifiable, and verify names it.
        for v in versions { try? removeVersion(v) }
    }

    /// Packs of the delta sets the manifest lists for the targets whose base version this store
    /// holds completely (its objects and every chunk), so every delta in them can be applied here.
    func usableDeltaPacks(_ targets: [PullTarget], manifest: Manifest, index: ChunkIndex) throws -> [PackID] {
        var out: [PackID] = []
        var holds: [SHA256Digest: Bool] = [:]
        for t in targets {
            guard let entry = manifest.models[t.name.value]?.versions.first(where: { $0.id == t.id }) else { continue }
            for d in entry.deltas {
                if holds[d.base] == nil {
                    var complete = false
                    // A base whose objects are not all here (a killed pull) is not held.
                    if hasObject(d.base), case let v = try readVersion(d.base), hasObject(v.tree) {
                        // Bases are read from full records (depth 1).
                        complete = try readTree(v.tree).files.allSatisfy { try $0.chunks.allSatisfy { index.containsFull($0.id) } }
                    }
                    holds[d.base] = complete
                }
                if holds[d.base] == true { out += d.packs }
            }
        }
        return out
    }

    /// Stores the `wanted` chunks found in files under the seed directories; returns how many.
    /// A seed file that cannot be read is skipped (it is only a shortcut), with the reason logged.
    /// Files are read in blocks of `blockSize` (the install batch size: the same memory).
    func ingestSeeds(_ seeds: [String], wanted: any ChunkIDMembership, existing: ChunkIndex, chunker: ChunkerParameters,
                     blockSize: Int, writeBatchBytes: Int, log: (@Sendable (String) -> Void)?) throws -> (chunks: Int, packs: [PackID]) {
        let work = try makeWorkingDirectory("seed")
        defer { work.remove() }
        let ingester = try ChunkIngester(store: self, existing: existing, directory: work.path, packTargetSize: 256 << 20,
                                     chunker: chunker, wanted: wanted, blockSize: blockSize, writeBatchBytes: writeBatchBytes)
        for seed in seeds where FileSystem.isDirectory(seed) {
            let inputs: [AddInput]
            do { inputs = try AddInputs.collectLenient(seed) } catch {
                log?("seed \(seed) skipped: \(error)")
                continue
            }
            for input in inputs {
                do { _ = try ingester.ingest(input) { _ in } } catch {
                    log?("seed file \(input.sourcePath) skipped: \(error)")
                }
            }
        }
        let packs = try ingester.finish().full
        try commitPacks(packs)
        if ingester.newChunks > 0 { log?("reused \(ingester.newChunks) chunks from files on disk") }
        return (ingester.newChunks, packs.map(\.id))
    }
}

/// Runs planned range requests on several threads, a batch of plans at a time, verifies every
/// record, and appends the verified chunks to packs that are committed as they fill, so an
/// interrupted pull resumes.
/// Unchecked: every mutable field (next plan, failure, sink, counters) is used under `lock`.
final class ChunkFetcher: @unchecked Sendable {
    let store: Store
    let remote: any ReadableBackend
    /// The batch being fetched (one planning window), emptied when it is done.
    private var plans: [RangePlan] = []
    /// Full records of this store, where delta records find their bases.
    let baseIndex: ChunkIndex
    let level: Int32
    let commitEvery: UInt64
    /// Verified records a worker collects before taking the sink's lock.
    let verifiedBatchBytes: Int
    let progressTotal: UInt64
    let progress: (@Sendable (UInt64, UInt64) -> Void)?
    let isCancelled: (@Sendable () -> Bool)?

    private let lock = NSLock()
    private var next = 0
    private var failure: Error?
    private var sink: PackSink!
    private let written = PackList()
    /// Packs committed to the store so far.
    var writtenPacks: Set<PackID> { written.ids }
    private let work: WorkingDirectory
    private var done: UInt64 = 0
    private(set) var rangeBytes: UInt64 = 0
    /// Chunks rebuilt from delta records.
    private(set) var deltaChunks = 0

    init(store: Store, remote: any ReadableBackend, baseIndex: ChunkIndex = ChunkIndex(), commitEvery: UInt64,
         verifiedBatchBytes: Int, writeBatchBytes: Int, progressTotal: UInt64,
         progress: (@Sendable (UInt64, UInt64) -> Void)?, isCancelled: (@Sendable () -> Bool)? = nil) throws {
        self.baseIndex = baseIndex
        level = Int32(store.config.compressionLevel)
        self.isCancelled = isCancelled
        self.store = store
        self.remote = remote
        self.commitEvery = commitEvery
        self.verifiedBatchBytes = verifiedBatchBytes
        self.progressTotal = progressTotal
        self.progress = progress
        work = try store.makeWorkingDirectory("pull")
        sink = PackSink(directory: work.path, rolloverSize: commitEvery, writeBatchBytes: writeBatchBytes) {
            [store, written] packs in
            try store.commitPacks(packs)
            written.add(packs.map(\.id))
            CrashPoint.hit("pull-after-commit")
        }
    }

    /// Fetches every batch of plans `source` hands over, then commits what is left in the pack
    /// being written. Verified chunks are committed even when a batch or the planning fails, so
    /// the next attempt resumes.
    func run(parallel: Int, source: (_ fetch: ([RangePlan]) throws -> Void) throws -> Void) throws {
        defer { work.remove() }
        let outcome = Result { try source { try fetchBatch($0, parallel: parallel) } }
        lock.lock()
        defer { lock.unlock() }
        let committed = Result { try sink.seal() }
        try outcome.get()
        try committed.get()
    }

    private func fetchBatch(_ batch: [RangePlan], parallel: Int) throws {
        guard !batch.isEmpty else { return }
        lock.lock()
        plans = batch
        next = 0
        lock.unlock()
        let group = DispatchGroup()
        for _ in 0..<max(1, min(parallel, batch.count)) {
            group.enter()
            Thread.detachNewThread { [self] in
                defer { group.leave() }
                worker()
            }
        }
        group.wait()
        lock.lock()
        defer { lock.unlock() }
        plans = []
        if let failure { throw failure }
    }

    private func worker() {
        while true {
            lock.lock()
            if failure == nil, isCancelled?() == true { failure = SLMError.cancelled }
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
        let path = RemoteLayout.packPath(plan.pack)
        var verified: [(ChunkID, PackIndexEntry, EncodedChunk)] = []
        var verifiedBytes = 0
        var scratch = [UInt8](repeating: 0, count: 0)
        let cache = DecodedChunkCache()
        // Verified records go to the sink in batches (rebuilt deltas are several times their
        // download), so memory follows the batch, not the range.
        func handOver() throws {
            lock.lock()
            defer { lock.unlock() }
            for (id, e, encoded) in verified { try sink.append(id: id, rawLength: e.rawLength, encoded: encoded) }
            deltaChunks += verified.filter { $0.1.codec == .delta }.count
            done += verified.reduce(0) { $0 + PackFormat.recordSize($1.1.storedLength) }
            verified.removeAll(keepingCapacity: true)
            verifiedBytes = 0
        }
        func verify(_ record: [UInt8], _ id: ChunkID, _ e: PackIndexEntry) throws {
            let encoded = try verifiedRecord(record, id: id, entry: e, pack: plan.pack, scratch: &scratch, cache: cache)
            verified.append((id, e, encoded))
            verifiedBytes += e.codec == .delta ? encoded.payload.count : Int(e.storedLength)
            if verifiedBytes >= verifiedBatchBytes { try handOver() }
        }
        // The range arrives in pieces: each record is verified as soon as its last byte is in,
        // straight from the piece, and only a record cut by the piece's end is kept (`window`),
        // so a worker holds about one record beyond what the network delivered ahead of it.
        var window: [UInt8] = []
        var windowStart = plan.range.lowerBound
        var next = 0
        try remote.readRange(path, range: plan.range) { piece in
            let pieceStart = windowStart + UInt64(window.count)
            let end = pieceStart + UInt64(piece.count)
            guard end <= plan.range.upperBound else {
                throw SLMError.remote(url: "\(remote.location)/\(path)", problem: "sent more than the \(plan.range.count) bytes of the range")
            }
            func bytes(_ r: Range<UInt64>) -> UnsafeRawBufferPointer {
                UnsafeRawBufferPointer(rebasing: piece[Int(r.lowerBound - pieceStart)..<Int(r.upperBound - pieceStart)])
            }
            while next < plan.chunks.count, plan.chunks[next].recordRange.upperBound <= end {
                let entry = plan.chunks[next]
                let r = entry.recordRange
                let record = r.lowerBound >= pieceStart ? Array(bytes(r))
                    : Array(window[Int(r.lowerBound - windowStart)...]) + Array(bytes(pieceStart..<r.upperBound))
                try verify(record, entry.id, entry)
                next += 1
            }
            let keepFrom = min(next < plan.chunks.count ? plan.chunks[next].recordRange.lowerBound : end, end)
            if keepFrom >= pieceStart {
                window.removeAll(keepingCapacity: true)
                window.append(contentsOf: bytes(keepFrom..<end))
            } else {
                window.removeFirst(Int(keepFrom - windowStart))
                window.append(contentsOf: piece)
            }
            windowStart = keepFrom
        }
        guard next == plan.chunks.count else {
            throw SLMError.remote(url: "\(remote.location)/\(path)", problem: "range ended before record \(next + 1) of \(plan.chunks.count)")
        }
        try handOver()
        lock.lock()
        defer { lock.unlock() }
        try sink.sealIfFull()
        rangeBytes += UInt64(plan.range.count)
        progress?(done, progressTotal)
    }

    /// A record as received, checked against its chunk id, as the record to store. A delta is
    /// rebuilt from local bases, checked, and stored as a full record: this store never depends
    /// on a delta, and a bad delta is damage (exit 5). Any other bad record is the remote's fault.
    private func verifiedRecord(_ record: [UInt8], id: ChunkID, entry e: PackIndexEntry, pack: PackID,
                                scratch: inout [UInt8], cache: DecodedChunkCache) throws -> EncodedChunk {
        if scratch.count < Int(e.rawLength) { scratch = [UInt8](repeating: 0, count: Int(e.rawLength)) }
        let loc = e.location(in: pack)
        let what = "\(remote.location)/\(RemoteLayout.packPath(pack))"
        guard e.codec == .delta else {
            do {
                try scratch.withUnsafeMutableBytes { out in
                    try ChunkVerifier.decodeRecord(record, expected: id, location: loc, into: out, what: what)
                }
            } catch let e as SLMError {
                guard case let .damaged(p, problem) = e.kind else { throw e }
                throw SLMError.remote(url: p, problem: "served bad data: \(problem)")
            }
            return EncodedChunk(codec: e.codec, payload: Array(record[PackFormat.recordHeaderSize...]))
        }
        let header: DeltaHeader
        do {
            header = try ChunkVerifier.deltaHeader(record, rawLength: e.rawLength, what: what)
            try scratch.withUnsafeMutableBytes { out in
                try ChunkVerifier.decodeRecord(record, expected: id, location: loc, into: out, what: what,
                                               base: store.baseReader(index: baseIndex, for: id, cache: cache))
            }
        } catch let e as SLMError {
            guard case let .damaged(p, problem) = e.kind else { throw e }
            throw SLMError.damaged(path: p, problem: "served bad data: delta of chunk \(id.hex): \(problem)")
        }
        return scratch.withUnsafeBytes {
            ChunkEncoder.encode(UnsafeRawBufferPointer(rebasing: $0[0..<Int(e.rawLength)]), level: level, layout: header.fullLayout)
        }
    }
}

/// The packs a fetch committed, shared with its sink's commit step.
private final class PackList: Sendable {
    private let packs = Mutex(Set<PackID>())
    var ids: Set<PackID> { packs.withLock { $0 } }
    func add(_ new: [PackID]) { packs.withLock { $0.formUnion(new) } }
}
