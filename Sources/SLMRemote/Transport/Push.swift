// `push`: publish local versions into a remote through its backend. Chunks the remote lacks are
// verified and written into new packs (pack before index); objects follow, then version refs
// (created once), stage refs and registry records; manifest.json is replaced last with a
// compare-and-swap, rebuilt from the remote's refs on conflict, so concurrent publishers all end
// up listed.

import SLMFormats
import SLMLocalStore
import Foundation

/// What a push did.
public struct PushResult: Sendable {
    /// Versions sent (NAME@VERSION).
    public var versionsPushed: [String]
    /// Versions the remote had already.
    public var versionsPresent: [String]
    /// Chunk records uploaded.
    public var chunksCopied: Int
    /// Record bytes uploaded.
    public var bytesCopied: UInt64
    /// Delta sets written ("name@version <- name@version") and their record bytes.
    public var deltaSets: [String] = []
    /// Record bytes of the delta sets written.
    public var deltaBytes: UInt64 = 0
    /// Stage refs written or removed (NAME@STAGE).
    public var stagesPushed: [String]
    /// Bytes this push sent to the remote and requests it made (reads included).
    public var bytesSent: UInt64
    /// Requests made.
    public var requests: Int
    /// Registry pages written (0 with web off).
    public var pagesWritten: Int
    /// Remote pack indexes searched for the chunks pushed (read from the local cache when seen before).
    public var packIndexesSearched: Int = 0
    /// Wall time.
    public var seconds: Double
    /// The signed release written (when the push was given signing keys).
    public var release: ReleaseSigningResult? = nil
    /// Things the publisher should know that did not stop the push, as errors so they carry
    /// their remedies.
    public var warnings: [SLMError] = []
}

/// Writes a remote's web pages at the end of a push. The pages live in a layer above the
/// remotes (SLMPages), so push reaches them through this protocol.
public protocol RemotePageWriter: Sendable {
    /// Writes the pages of `models` from `store` into `destination`, linking only to versions
    /// `manifest` lists; `pushedNow` ("model@version") are the versions this push published.
    /// Returns the number of pages written.
    func writePages(from store: Store, models: [ModelName], manifest: Manifest, pushedNow: Set<String>,
                    to destination: any StoreBackend) throws -> Int
}

/// How to push: pack size, progress, pages, deltas, signing.
public struct PushOptions: Sendable {
    /// New packs are sealed (and uploaded) at this size.
    public var packTargetSize: UInt64 = 256 << 20
    /// Called with (bytes uploaded, bytes to upload) as work advances.
    public var progress: (@Sendable (UInt64, UInt64) -> Void)?
    /// Writes the registry pages of the pushed models into the remote's web/ after the manifest
    /// (SLMPages' `RegistryPages`, which this layer cannot see); nil writes none.
    public var pages: (any RemotePageWriter)? = nil
    /// Write delta sets for the versions pushed (against their parent, every version holding
    /// a stage on the remote, and `deltaFrom`).
    public var deltas = true
    /// More versions to write delta sets against.
    public var deltaFrom: [VersionRef] = []
    /// Also write delta sets against every version a device reports running (reports/ on the
    /// destination, Format.md §10.2), so devices several releases behind still get deltas.
    public var deltasForFleet = false
    /// Sign release metadata after the manifest (push --sign).
    public var signing: ReleaseSigning?
    /// The remote's id for a remote that has none yet (push --remote-id); a random one otherwise.
    /// A remote keeps the id it has: naming another one is an error.
    public var remoteID: String?
    /// Remotes with more packs are searched only where the manifest puts the models pushed.
    var wholeSearchLimit = RemoteSetup.wholeSearchLimit
    /// The defaults: 256 MiB packs, no pages, deltas against the parent and staged versions,
    /// unsigned.
    public init() {}
}

extension Store {
    /// Publishes `requested` (every version when empty) with their dependencies to `destination`:
    /// the chunks it lacks in new packs (pack before index), objects, version refs, stage refs and
    /// registry records, then manifest.json by compare-and-swap; concurrent publishers all end up
    /// listed. A killed push resumes from its outgoing packs.
    public func push(to destination: any StoreBackend, refs requested: [VersionRef], options: PushOptions = PushOptions()) throws -> PushResult {
        let started = Timestamp.monotonicSeconds()
        let trafficBefore = destination.traffic
        // Refuse a location that is not a store before writing anything there.
        try RemoteSetup.ensureStore(destination, config: config)
        let lease = try destination.publishLease()
        defer { _ = lease }
        let selected = try versionsToPush(requested)

        let dataLock = try self.dataLock(.shared)
        defer { dataLock.unlock() }
        let outbox = try PushOutbox(store: self, destination: destination)
        defer { outbox.unlock() }
        let (outgoing, indexCache, checksums) = (outbox.directory, outbox.indexCache, outbox.checksums)
        let reader = RemoteReader(remote: destination, cacheDirectory: indexCache)
        let localIndex = try loadChunkIndex()

        let planned = try planPush(selected, to: destination, reader: reader, wholeSearchLimit: options.wholeSearchLimit)
        let (plan, copied) = try uploadChunks(planned, index: localIndex, outgoing: outgoing, to: destination,
                                              cache: indexCache, checksums: checksums, options: options)
        let versionPacks = try plan.versionPacks()
        let toPush = plan.versions
        let present = plan.present
        var deltaLabels: [String] = []
        var deltaBytes: UInt64 = 0
        if options.deltas {
            (deltaLabels, deltaBytes) = try pushDeltaSets(toPush.map { ($0.resolved, $0.tree) }, present: present, options: options,
                                                          localIndex: localIndex, outgoing: outgoing, to: destination,
                                                          cache: indexCache, checksums: checksums)
        }
        CrashPoint.hit("push-before-refs")

        // Objects and version refs, dependencies first.
        // Tree objects go from their files (checked against their ids as they are copied): a
        // large model's tree is never held.
        let records = try toPush.reversed().map {
            VersionRecord(name: $0.resolved.name, version: $0.resolved.version, id: $0.resolved.id, versionObject: $0.versionBytes, treeObject: [],
                          treeFile: (try FileDescriptor.openForReading(objectPath($0.resolved.object.tree)), $0.resolved.object.tree))
        }
        try Publication.publish(records, to: RemoteVersionDestination(backend: destination))
        // What the remote now holds, for `add` to warn before a version number is reused.
        recordPushed(toPush.map { ($0.label, $0.resolved.id) } + present.compactMap { label in
            (try? VersionRef.parse(label)).flatMap { try? resolve($0) }.map { (label, $0.id) }
        }, to: HTTPCredentials.redact(destination.location))

        // Stages (only those naming a version the remote has) and registry records.
        var stagesPushed: [String] = []
        for m in Set(selected.map(\.name)).sorted() {
            stagesPushed += try pushStages(of: m, to: destination)
            try copyRegistryRecords(of: m, to: destination)
        }
        // The remote's id is this store's from its first push here: a manifest naming another is
        // refused, so an id planted by whoever can write the remote is never signed for.
        let pinnedID = try RemoteIDRecord.load(store: self, location: destination.location)?.remote
        if let pinnedID, let asked = options.remoteID, asked != pinnedID {
            throw SLMError.conflict("\(destination.location) is remote \(pinnedID) to this store, not \(asked): a remote keeps the id it was first given")
        }
        let (manifest, createdID) = try RemoteSetup.replaceManifest(destination, reader: reader, known: checksums, versionPacks: versionPacks,
                                                                    refresh: Set(selected.map(\.name.value)), remoteID: options.remoteID ?? pinnedID)
        if pinnedID == nil, createdID || options.remoteID != nil, let id = manifest.remoteID {
            try RemoteIDRecord(remote: id).save(store: self, location: destination.location)
        }
        // The release is signed after the manifest, so it never vouches for versions the remote
        // does not list yet; a device that sees the old release meanwhile just stays where it is.
        var warnings: [SLMError] = []
        let release = try options.signing.map { try signRelease(on: destination, signing: $0) }
        if release == nil, try destination.exists(SignedRelease.path) {
            warnings.append(SLMError.conflict("\(destination.location) has signed release metadata that this push did not renew: devices that check it will not see the versions pushed now").remedied(by: .signRelease))
        }
        CrashPoint.hit("push-before-web")
        // The pages of the models pushed, linking only to versions the remote lists; the index
        // from the manifest just written, so it shows every publisher's models.
        var pages = 0
        if let writer = options.pages {
            pages = try writer.writePages(from: self, models: Set(selected.map(\.name)).sorted(), manifest: manifest,
                                          pushedNow: Set(toPush.map(\.label)), to: destination)
        }
        let traffic = destination.traffic.since(trafficBefore)
        return PushResult(versionsPushed: toPush.map(\.label), versionsPresent: present,
                          chunksCopied: plan.missing.count, bytesCopied: copied, deltaSets: deltaLabels, deltaBytes: deltaBytes, stagesPushed: stagesPushed,
                          bytesSent: traffic.bytesSent, requests: traffic.requests, pagesWritten: pages, packIndexesSearched: plan.indexesRead,
                          seconds: Timestamp.monotonicSeconds() - started, release: release, warnings: warnings)
    }

    /// What `selected` needs on `destination`: the versions it lacks (one it has must be the same
    /// version) and the chunks of those no remote pack holds, searched in the packs of the same
    /// models' versions first, one index at a time.
    func planPush(_ selected: [ResolvedVersion], to destination: StoreBackend, reader: RemoteReader, wholeSearchLimit: Int) throws -> PushPlan {
        var plan = PushPlan()
        for r in selected {
            let refPath = RemoteLayout.versionRefPath(r.name, r.version)
            let remoteID = try destination.readRef(refPath)
            try plan.classify(r, remoteID: remoteID, location: destination.location) {
                (try readTree(r.object.tree), try readObject(r.id, limit: VersionObject.maxEncodedSize))
            }
        }
        let models = plan.models
        // try?: a manifest this release cannot read only costs the search order; the manifest
        // itself is rebuilt from the refs at the end, as before.
        let previousManifest = try? reader.manifest(models: models)
        let order = RemoteSetup.searchOrder(models: models, manifest: previousManifest, listed: try RemoteSetup.committedPacks(destination),
                                            wholeSearchLimit: wholeSearchLimit)
        try plan.locate(order: order) { try reader.packIndex($0).entries }
        return plan
    }

    /// The chunks a remote lacks (the plan's missing ones), each checked against its id here,
    /// into new packs uploaded pack first, index last. Returns the plan with the pack each went
    /// into noted, and the stored bytes sent.
    func uploadChunks(_ planned: PushPlan, index localIndex: ChunkIndex, outgoing: String, to destination: StoreBackend,
                      cache indexCache: String, checksums: RemoteSetup.PackChecksums,
                      options: PushOptions) throws -> (plan: PushPlan, copied: UInt64) {
        // The sink's commit step notes each uploaded pack in the plan, which it owns meanwhile.
        final class Uploading { var plan: PushPlan; init(_ plan: PushPlan) { self.plan = plan } }
        let uploading = Uploading(planned)
        let missing = planned.missing
        let sink = PackSink(directory: outgoing, rolloverSize: options.packTargetSize) { packs in
            for p in packs {
                try RemoteSetup.upload(p.id, from: outgoing, to: destination, cache: indexCache, checksums: checksums)
                uploading.plan.noteUploaded(p.entries.map(\.id), in: p.id)
            }
        }
        var copied: UInt64 = 0
        var total: UInt64 = 0
        for id in missing { total += UInt64(localIndex.location(of: id)?.storedLength ?? 0) }
        for id in missing {
            guard let loc = localIndex.location(of: id) else {
                throw SLMError.damaged(path: root, problem: "chunk \(id.hex) is missing from the local store").remedied(by: .verifyStore)
            }
            if loc.codec == .delta {
                // Stored here only as a delta: the remote gets the full record, re-encoded.
                try sink.append(id: id, rawLength: loc.rawLength, encoded: try fullRecord(of: id, at: loc, index: localIndex))
            } else {
                try sink.appendRecord(try readVerifiedRecord(id, at: loc), id: id, rawLength: loc.rawLength, codec: loc.codec)
            }
            try sink.sealIfFull()
            copied += UInt64(loc.storedLength)
            options.progress?(copied, total)
        }
        try sink.seal()
        return (uploading.plan, copied)
    }

    /// Writes `model`'s stage refs that name a version the remote has, and removes a remote
    /// staging ref left behind by a version that moved on here (promoted to production or
    /// archived), unless this store has a new staging candidate. Returns what changed.
    func pushStages(of m: ModelName, to destination: StoreBackend) throws -> [String] {
        var changed: [String] = []
        let local = Dictionary(try stageRefs(of: m), uniquingKeysWith: { a, _ in a })
        let stagingPath = RemoteLayout.stageRefPath(m, "staging")
        // try?: a remote staging ref that does not parse is not one this store wrote; it is left.
        if local["staging"] == nil, let bytes = try destination.read(stagingPath, limit: 4096),
           let remoteID = try? Store.parseRefFile(bytes, source: "\(destination.location)/\(stagingPath)"),
           local["production"] == remoteID || local["archived"] == remoteID {
            try destination.delete(stagingPath)
            changed.append("\(m)@staging (left)")
        }
        for (stage, id) in try stageRefs(of: m) {
            let version = try readVersion(id).version
            let refPath = RemoteLayout.versionRefPath(m, version)
            guard try destination.readRef(refPath) == id else { continue }
            let stagePath = RemoteLayout.stageRefPath(m, stage)
            if try destination.readRef(stagePath) != id {
                try destination.write(stagePath, bytes: Array((id.hex + "\n").utf8))
                changed.append("\(m)@\(stage)")
            }
        }
        return changed
    }

    /// The full record of a chunk stored as a delta: decoded (base read, hash checked) and
    /// encoded with the planes transform and phase the delta names.
    func fullRecord(of id: ChunkID, at loc: ChunkLocation, index: ChunkIndex) throws -> EncodedChunk {
        let record = try readRecord(at: loc)
        let what = "\(packPath(loc.pack)) chunk \(id.hex)"
        let header = try ChunkVerifier.deltaHeader(record, rawLength: loc.rawLength, what: what)
        var raw = [UInt8](repeating: 0, count: Int(loc.rawLength))
        try raw.withUnsafeMutableBytes {
            try ChunkVerifier.decodeRecord(record, expected: id, location: loc, into: $0, what: what, base: baseReader(index: index, for: id))
        }
        return raw.withUnsafeBytes { ChunkEncoder.encode($0, level: Int32(config.compressionLevel), layout: header.fullLayout) }
    }

    /// Delta sets for the versions pushed now, against: the parent, every version holding a
    /// stage on the remote, and `options.deltaFrom` (for versions of the same model). A base
    /// must be local and listed by the remote (or pushed now), so the remote can always serve
    /// the full records a delta's bases need. A set this store already has is copied (each
    /// record verified against its base); any other is computed now.
    func pushDeltaSets(_ versions: [(ResolvedVersion, TreeObject)], present: [String], options: PushOptions,
                       localIndex: ChunkIndex, outgoing: String, to destination: StoreBackend,
                       cache: String, checksums: RemoteSetup.PackChecksums) throws -> ([String], UInt64) {
        let extra = try options.deltaFrom.map { try resolve($0) }
        let pushedNow = Set(versions.map(\.0.id))
        var labels: [String] = []
        var bytes: UInt64 = 0
        var stageHolders: [ModelName: [SHA256Digest]] = [:]
        var fleetBases: [ModelName: [SHA256Digest]] = [:]
        if options.deltasForFleet {
            // Only enrolled devices' valid reports name bases: a forged report cannot make a push
            // build one delta set per version the store holds.
            var counters = try ReportCounters.load(store: self, location: destination.location)
            let view = try Fleet.view(of: destination, manifest: nil, enrolled: try DeviceEnrollment.load(store: self, location: destination.location),
                                      counters: &counters, now: time(nil), silentAfter: .infinity)
            for (model, versions) in view.models {
                // A reported name or version this store does not hold gets no delta set.
                guard let name = ModelName(parsing: model) else { continue }
                for (v, c) in versions.sorted(by: { $0.key < $1.key }) where c.running > 0 {
                    if let sv = SemVer(parsing: v), let held = try resolveIfPresent(name, sv) { fleetBases[name, default: []].append(held.id) }
                }
            }
        }
        for (r, tree) in versions {
            if stageHolders[r.name] == nil {
                var held: [SHA256Digest] = []
                for path in try destination.list(RemoteLayout.stagesDirectory(r.name), recursive: false) {
                    if let id = try destination.readRef(path) { held.append(id) }
                }
                stageHolders[r.name] = held
            }
            var bases: [SHA256Digest] = []
            if let p = r.object.parent { bases.append(p) }
            bases += stageHolders[r.name] ?? []
            bases += extra.filter { $0.name == r.name }.map(\.id)
            bases += fleetBases[r.name] ?? []
            var seen = Set<SHA256Digest>([r.id])
            for baseID in bases where seen.insert(baseID).inserted {
                guard hasObject(baseID) else { continue }
                let base = try readVersion(baseID)
                guard base.name == r.name.value else { continue }
                let listed = try pushedNow.contains(baseID) || destination.exists(RemoteLayout.versionRefPath(r.name, base.version))
                guard listed else { continue }
                let path = RemoteLayout.deltaSetPath(target: r.id, base: baseID)
                if try destination.exists(path) { continue }
                final class Uploaded { var packs: [PackID] = [] }
                let uploaded = Uploaded()
                let sink = PackSink(directory: outgoing, rolloverSize: options.packTargetSize) { packs in
                    for p in packs {
                        try RemoteSetup.upload(p.id, from: outgoing, to: destination, cache: cache, checksums: checksums)
                        uploaded.packs.append(p.id)
                    }
                }
                if let local = try deltaSet(target: r.id, base: baseID) {
                    for pack in local.packs {
                        for e in try readPackIndex(pack).entries where e.codec == .delta {
                            let record = try readVerifiedRecord(e.id, at: e.location(in: pack), index: localIndex)
                            try sink.appendRecord(record, id: e.id, rawLength: e.rawLength, codec: .delta)
                            try sink.sealIfFull()
                            bytes += PackFormat.recordSize(e.storedLength)
                        }
                    }
                } else {
                    let candidates = try DeltaPlanner.candidates(target: tree, base: try readTree(base.tree))
                    let stats = try writeDeltas(candidates, index: localIndex, sink: sink, target: { [self] c in
                        guard let loc = localIndex.location(of: c.id) else { return nil }
                        var out = [UInt8](repeating: 0, count: c.rawLength)
                        try out.withUnsafeMutableBytes { try self.readChunk(c.id, at: loc, into: $0, index: localIndex) }
                        return out
                    }, fullStored: { [self] in fullStoredLength(of: $0, index: localIndex) })
                    bytes += stats.storedBytes
                }
                try sink.seal()
                guard !uploaded.packs.isEmpty else { continue }
                let set = DeltaSet(target: r.id, base: baseID, packs: uploaded.packs)
                // Created only if absent: a set file, once written, never changes.
                _ = try destination.write(RemoteLayout.deltaSetPath(set), bytes: set.encoded(), ifMatching: nil)
                labels.append("\(r.name)@\(r.version) <- \(r.name)@\(base.version)")
            }
        }
        return (labels, bytes)
    }

    /// The requested versions (every version when none are named) and, transitively, the
    /// versions they depend on. A dependency that does not resolve here stops the push: a remote
    /// must never list a version whose dependencies it cannot serve.
    func versionsToPush(_ requested: [VersionRef]) throws -> [ResolvedVersion] {
        var queue: [ResolvedVersion] = []
        if requested.isEmpty {
            for m in try models() { for (v, id) in try versions(of: m) { queue.append(ResolvedVersion(name: m, version: v, id: id, object: try readVersion(id))) } }
        } else {
            queue = try requested.map { try resolve($0) }
        }
        var selected: [ResolvedVersion] = []
        var seen = Set<SHA256Digest>()
        while !queue.isEmpty {
            let r = queue.removeFirst()
            guard seen.insert(r.id).inserted else { continue }
            selected.append(r)
            for d in r.object.dependencies {
                do {
                    queue.append(try resolveSelector(name: try ModelName(d.name), selector: d.range).resolved)
                } catch let e as SLMError {
                    throw SLMError.notFound("\(r.name)@\(r.version) depends on \(d.name)@\(d.range), which does not resolve in \(root) (\(e.description)); add it before pushing")
                }
            }
        }
        return selected
    }

    /// Registry records (history, metrics, policy) travel with the model. The logs are
    /// append-only, so a remote copy is replaced only by a longer local one, with a
    /// compare-and-swap so a concurrent publisher's longer copy is never overwritten.
    func copyRegistryRecords(of model: ModelName, to destination: StoreBackend) throws {
        let src = "\(registryDirectory)/\(model.value)"
        guard FileSystem.isDirectory(src) else { return }
        func copy(_ rel: String) throws {
            let from = rel.isEmpty ? src : "\(src)/\(rel)"
            if FileSystem.isDirectory(from) {
                for name in try FileSystem.listDirectory(from) where !name.hasPrefix(".") { try copy(rel.isEmpty ? name : "\(rel)/\(name)") }
                return
            }
            let bytes = try FileSystem.readFile(from, limit: 64 << 20)
            let path = RemoteLayout.registryPath(model.value, rel)
            // Rollout records are replaced, not appended to: the higher serial is the newer one.
            let isRollout = rel.hasPrefix("@rollouts/")
            // A record that does not parse (or has no serial) loses to one that does.
            func newer(_ local: [UInt8], than remote: [UInt8]) -> Bool {
                guard let ls = JSONValue.parseIfWellFormed(local)?["serial"]?.uint64Value else { return false }
                guard let rs = JSONValue.parseIfWellFormed(remote)?["serial"]?.uint64Value else { return true }
                return ls > rs
            }
            for _ in 0..<10 {
                let existing: [UInt8]
                let validator: String?
                switch try destination.readIfChanged(path, validator: nil, limit: 64 << 20) {
                case .absent: existing = []; validator = nil
                case let .changed(b, v): existing = b; validator = v
                case .unchanged: continue
                }
                if isRollout {
                    guard existing.isEmpty || newer(bytes, than: existing) else { return }
                } else {
                    guard bytes != existing, bytes.count >= existing.count else { return }
                }
                if existing.isEmpty || validator != nil, try destination.write(path, bytes: bytes, ifMatching: validator) { return }
            }
            throw SLMError.conflict("\(destination.location)/\(path) kept changing while being published; push again")
        }
        try copy("")
    }
}

/// Where a push's sealed packs wait for upload to one remote: a directory kept per remote, not a
/// throwaway working directory, so a push killed mid-upload leaves them and the next push to that
/// remote sends them first (a multipart upload resumes from its saved parts). Held under an
/// exclusive lock for the push; remote pack indexes are read through `indexCache`, checked
/// against the checksums the manifest lists.
final class PushOutbox {
    let directory: String
    let indexCache: String
    let checksums = RemoteSetup.PackChecksums()
    private let lock: FileLock

    init(store: Store, destination: StoreBackend) throws {
        directory = "\(store.root)/cache/outgoing/\(SHA256Hasher.hash(Array(destination.location.utf8)).hex.prefix(16))"
        try FileSystem.makeDirectories(directory)
        lock = try FileLock(path: directory + "/.lock", mode: .exclusive)
        indexCache = store.remoteIndexCache(for: destination.location)
        do {
            try RemoteSetup.uploadLeftovers(in: directory, to: destination, cache: indexCache, checksums: checksums)
        } catch {
            lock.unlock()
            throw error
        }
    }

    func unlock() { lock.unlock() }
}

/// Steps on a remote store that are not about one version: creating it, reading its pack
/// indexes, rebuilding its manifest.
enum RemoteSetup {
    // "config" too: seen in a listing, it means another publisher is creating the store right now.
    static let layout: Set<String> = ["config", "packs", "objects", "refs", "registry", "deltas", "manifests", "tmp", "locks", "web", "manifest.json", "release.json"]

    /// Makes `backend` a store if it is not one yet. A location holding anything but store
    /// files is refused; two publishers creating one store at once both succeed.
    static func ensureStore(_ backend: StoreBackend, config: StoreConfig) throws {
        for _ in 0..<3 {
            if let bytes = try backend.read(RemoteLayout.config, limit: 1 << 20) {
                _ = try StoreConfig.decode(bytes, source: "\(backend.location)/config")
                return
            }
            let entries = try backend.list("", recursive: false)
            if let stray = entries.first(where: { !layout.contains($0) }) {
                throw SLMError.notAStore(path: backend.location, problem: "not a slmstore store (no config) and not empty (it holds \"\(stray)\"); refusing to push into it")
            }
            try config.chunker.validate()
            if try backend.write(RemoteLayout.config, bytes: config.encoded(), ifMatching: nil) { return }
        }
        throw SLMError.conflict("\(backend.location): its config kept changing while being created; push again")
    }

    /// Index checksums of the packs a push uploaded: the manifest lists them without reading
    /// the indexes back. Reference type: filled from the pack sinks' callbacks.
    final class PackChecksums { var byPack: [PackID: SHA256Digest] = [:] }

    /// Uploads one sealed pack (pack first: its index is what makes it visible), then forgets it.
    /// Its index goes into the remote's index cache under its checksum, as a pull would cache it.
    static func upload(_ id: PackID, from directory: String, to backend: StoreBackend, cache: String, checksums: PackChecksums) throws {
        let pack = "\(directory)/\(id.hex).pack", index = "\(directory)/\(id.hex).idx"
        let indexBytes = try FileSystem.readFile(index, limit: PackIndex.maxEncodedSize)
        let checksum = try PackIndex.decode(indexBytes, source: index).checksum
        try backend.upload(RemoteLayout.packPath(id), fromFile: pack)
        try backend.upload(RemoteLayout.packIndexPath(id), fromFile: index)
        if let checksum {
            checksums.byPack[id] = checksum
            FileSystem.writeCacheFile(indexBytes, to: "\(cache)/\(RemoteReader.cacheFileName(id, checksum: checksum))")
        }
        for path in [pack, index, pack + ".upload.json", index + ".upload.json"] { FileSystem.remove(path) }
    }

    /// Packs a killed push sealed but did not finish uploading. A pack whose index is missing or
    /// does not describe it was never sealed: it is dropped (its chunks are still local).
    static func uploadLeftovers(in directory: String, to backend: StoreBackend, cache: String, checksums: PackChecksums) throws {
        for name in try FileSystem.listDirectory(directory) where name.hasSuffix(".pack") {
            guard let id = PackID(hex: String(name.dropLast(5))) else { continue }
            let pack = "\(directory)/\(name)", index = "\(directory)/\(id.hex).idx"
            let sealed: Bool
            do {
                let decoded = try PackIndex.decode(try FileSystem.readFile(index, limit: PackIndex.maxEncodedSize), source: index)
                sealed = decoded.packSize == FileSystem.fileSize(pack)
            } catch {
                sealed = false
            }
            if sealed {
                try upload(id, from: directory, to: backend, cache: cache, checksums: checksums)
            } else {
                for path in [pack, index, pack + ".upload.json", index + ".upload.json"] { FileSystem.remove(path) }
            }
        }
    }

    /// The remote's committed packs: those whose index is uploaded (a pack's index goes last).
    static func committedPacks(_ backend: StoreBackend) throws -> [PackID] {
        try backend.list("packs", recursive: false).compactMap { path in
            path.hasSuffix(".idx") ? PackID(hex: String(FileSystem.basename(path).dropLast(4))) : nil
        }.sorted()
    }

    /// A remote with more packs than this is searched only in the packs its manifest lists for
    /// the models concerned; a smaller one is searched whole, which costs little.
    static let wholeSearchLimit = 256

    /// The packs a push searches for chunks the remote may already hold: those the manifest lists
    /// for versions of `models` (a new version's unchanged chunks, a dependency's), then, on a
    /// remote of at most `wholeSearchLimit` packs or one without a readable manifest, every
    /// other. A chunk held only elsewhere on a large remote is uploaded again: a duplicate
    /// record, never a missing one.
    static func searchOrder(models: Set<String>, manifest: Manifest?, listed: [PackID], wholeSearchLimit: Int = wholeSearchLimit) -> [PackID] {
        let committed = Set(listed)
        var related = Set<PackID>()
        for m in models { for v in manifest?.models[m]?.versions ?? [] { related.formUnion(v.packs) } }
        related.formIntersection(committed)
        guard manifest == nil || committed.count <= wholeSearchLimit else { return related.sorted() }
        return related.sorted() + committed.subtracting(related).sorted()
    }

    /// A write answered with success is read back: a server (or whatever a redirect reached)
    /// that says 200 and stores nothing, or an empty file, must not let push report success.
    /// Another publisher's manifest in its place is fine; a missing or unreadable one is not.
    static func confirmLanded(_ backend: StoreBackend, manifest bytes: [UInt8], entries: [(path: String, bytes: [UInt8])]) throws {
        for (path, e) in entries {
            guard let back = try backend.read(path, limit: e.count + 1), back == e else {
                throw SLMError.remote(url: "\(backend.location)/\(path)", problem: "the write was answered with success but the file read back is not what was written")
            }
        }
        let url = "\(backend.location)/\(RemoteLayout.manifest)"
        guard let back = try backend.read(RemoteLayout.manifest, limit: Manifest.maxEncodedSize) else {
            throw SLMError.remote(url: url, problem: "the write was answered with success but the file is not there")
        }
        guard back != bytes else { return }
        // Another publisher may have replaced it since: then it was rebuilt from refs that
        // include these, so it lists at least as many versions of every model.
        let written = try Manifest.decode(bytes, source: url)
        let found: Manifest
        do { found = try Manifest.decode(back, source: url) } catch {
            throw SLMError.remote(url: url, problem: "the write was answered with success but the file read back is not a manifest (\(back.count) bytes)")
        }
        for (name, m) in written.models where (found.models[name]?.versionCount ?? -1) < m.versionCount {
            throw SLMError.remote(url: url, problem: "the write was answered with success but the manifest read back lists fewer versions of \(name) than were written")
        }
    }

    /// Rebuilds manifest.json from the remote's refs and replaces it only if nobody else did
    /// meanwhile; on a conflict the rebuild sees the other publisher's refs too.
    @discardableResult
    static func replaceManifest(_ backend: StoreBackend, reader: RemoteReader, known: PackChecksums,
                                versionPacks: [SHA256Digest: [PackID]] = [:], refresh: Set<String> = [],
                                remoteID: String? = nil, sizeLimit: Int = Manifest.maxEncodedSize) throws -> (Manifest, createdID: Bool) {
        for _ in 0..<20 {
            let expected: String?
            var previous: Manifest? = nil
            switch try backend.readIfChanged(RemoteLayout.manifest, validator: nil, limit: Manifest.maxEncodedSize) {
            case .absent: expected = nil
            case let .changed(bytes, v):
                guard let v else { continue }  // replaced while being read: read again
                expected = v
                // One this release cannot read is rebuilt from the refs alone.
                previous = try? Manifest.decode(bytes, source: "\(backend.location)/manifest.json")
            case .unchanged: continue
            }
            // Checksums of committed packs: uploaded now, listed by the manifest being replaced,
            // or (a concurrent publisher's pack) read from its index.
            var packs: [PackID: SHA256Digest] = [:]
            for id in try committedPacks(backend) {
                if let c = known.byPack[id] ?? previous?.packIndexChecksums[id] {
                    packs[id] = c
                } else if let c = try reader.packIndex(id).checksum {
                    packs[id] = c
                    known.byPack[id] = c
                }
            }
            var manifest = try ManifestBuilder.build(from: backend, packs: packs, index: reader.packIndex, versionPacks: versionPacks,
                                                     previous: previous, refresh: refresh)
            if let kept = previous?.remoteID, let asked = remoteID, kept != asked {
                throw SLMError.conflict("\(backend.location)/manifest.json names remote id \(kept), but this remote is \(asked) (this store's record of its first push here, or the id asked for): a remote keeps the id it was first given, and one that changed was replaced by someone else")
            }
            manifest.remoteID = previous?.remoteID ?? remoteID ?? FileSystem.randomHex(16)
            let (bytes, entries) = manifest.encodedFiles()
            // Readers refuse larger files: better no new listing than one no device can read.
            for (path, e) in entries where e.count > sizeLimit {
                throw SLMError.failed("\(backend.location)/\(path) would be \(e.count) bytes, more than the \(sizeLimit) a reader accepts; the versions pushed are stored but not listed")
            }
            guard bytes.count <= sizeLimit else {
                throw SLMError.failed("\(backend.location)/manifest.json would be \(bytes.count) bytes (\(manifest.models.count) models), more than the \(sizeLimit) a reader accepts; the versions pushed are stored but not listed")
            }
            // Entries files first, each created once (its name is its hash): manifest.json never
            // names one that is not there.
            for (path, e) in entries where try !backend.write(path, bytes: e, ifMatching: nil) {
                // Already there: it should be these bytes, but one damaged by hand is replaced.
                if try backend.read(path, limit: e.count + 1) != e { try backend.write(path, bytes: e) }
            }
            if try backend.write(RemoteLayout.manifest, bytes: bytes, ifMatching: expected) {
                try confirmLanded(backend, manifest: bytes, entries: entries)
                return (manifest, previous?.remoteID == nil && remoteID == nil)
            }
        }
        throw SLMError.conflict("\(backend.location)/manifest.json kept changing while being replaced; push again")
    }
}
