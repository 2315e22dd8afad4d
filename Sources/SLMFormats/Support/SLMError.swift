// The errors the library reports: one typed case per situation a caller handles differently,
// each carrying what a user needs to act on it. `description` is the one-line message; the
// command layer alone maps cases to exit codes.

/// An error of the library: the case says what kind of trouble, the values what a user needs to
/// act.
public enum SLMError: Error, CustomStringConvertible, Equatable {
    /// A file or directory named by the user cannot be used.
    case input(path: String, problem: String)
    /// A command-line argument, reference, name or version is malformed.
    case argument(String)
    /// Something asked for does not exist in the store.
    case notFound(String)
    /// The request conflicts with what the store already holds.
    case conflict(String)
    /// A directory (or remote) that should be a store is not one.
    case notAStore(path: String, problem: String)
    /// A store, manifest or object written by a newer release: nothing here can read it, so
    /// retrying is pointless until slmstore is upgraded.
    case unsupportedFormat(path: String, what: String, found: UInt64, supported: UInt64)
    /// Bytes in the store (or from a remote) are not what they claim to be.
    case damaged(path: String, problem: String)
    /// A file reassembled from chunks that each passed their XXH3 check does not have the
    /// SHA-256 its tree names: one of `chunks` collides with another chunk's id.
    case fileMismatch(path: String, problem: String, chunks: [ChunkID])
    /// An operating-system call failed; `errno` is the cause.
    case io(path: String, operation: String, errno: Int32)
    /// A remote answered with a status the operation cannot use.
    case remoteStatus(url: String, status: Int, problem: String)
    /// A remote could not be reached or the transfer broke off. `transient` failures are retried.
    case transport(url: String, problem: String, transient: Bool)
    /// A remote answered, but with something unusable (bad data, a missing file it listed).
    case remote(url: String, problem: String)
    /// Release metadata a device was told to check is missing, unsigned, replayed or expired.
    case untrusted(source: String, problem: String)
    /// The operation was asked to stop (a signal, a caller's cancel); what was committed stays.
    case cancelled
    /// Anything else that stops the operation, worded for the user.
    case failed(String)
    /// A setting a caller gave is out of range or does not fit another: `problem` follows the
    /// setting's name. The library names settings in its own words (`Setting`); a command
    /// layer names its option for each instead, so no library message names a command-line flag.
    case invalidSetting(Setting, problem: String)
    /// `error`, with the failure beneath it kept whole (a file that would not parse, a remote
    /// that broke off): the message reads "error: cause"; the code, exit status and retry advice
    /// are `error`'s, and `underlying` hands the cause to a caller that wants it.
    indirect case caused(SLMError, by: SLMError)
    /// `error`, with what a user can change to get past it. The library words a remedy in its
    /// own terms (an option of its API); a command layer words it as the flag a user types.
    indirect case remedied(SLMError, Remedy)

    /// Settings a caller gives the library, in the words the library's messages use for them.
    public enum Setting: String, Sendable, CaseIterable {
        /// The share of devices a rollout reaches.
        case rolloutPercent = "rollout percent"
        /// How many devices must have taken a rollout before its rules act.
        case minReportingDevices = "minimum number of reporting devices"
        /// The failure rate above which a rollout is halted.
        case haltOnFailure = "halt-on-failure threshold"
        /// How often and by how much a rollout is raised.
        case advanceSchedule = "advance interval and step"
        /// The daily window a device downloads in.
        case downloadWindow = "download window"
        /// Where device reports are PUT.
        case reportURL = "report URL"
        /// The id a device reports and falls into rollout slices by.
        case deviceID = "device id"
        /// The private key of a TLS client certificate.
        case clientKey = "client key"
        /// The keys a release is signed with.
        case signingKeys = "signing"
        /// The command that checks a freshly installed version.
        case healthCheck = "a health check"
        /// The CA certificates trusted for https.
        case caBundle = "CA bundle"
        /// The TLS client certificate presented to servers that ask.
        case clientCertificate = "client certificate"
        /// A file holding a bearer token.
        case tokenFile = "token file"
        /// The largest version a pull installs.
        case maxInstallSize = "install size limit"
        /// How many times its download (or distinct chunks) a version may expand to.
        case maxExpansion = "expansion limit"
        /// Which revision of a Hugging Face cache folder is added.
        case revision = "revision"
    }

    /// What a user can change to get past an error, named by what it does rather than by any
    /// one command line's flag.
    public enum Remedy: Sendable, Equatable {
        /// The value at fault came from this setting.
        case given(Setting)
        /// The operation stopped at a limit this setting sets; raising it lets it through.
        case raise(Setting)
        /// Writing into a directory that already has files in it (checkout's `force`).
        case overwrite
        /// Promoting to production without the version passing through staging.
        case skipStaging
        /// Promoting across a major version.
        case allowBreaking
        /// Publishing signed release metadata by pushing with a signing key.
        case signRelease
        /// Signing again from this store's versions only, ignoring the remote's release.
        case signFromScratch
        /// Trusting a private CA's certificates by naming its bundle.
        case trustPrivateCA
        /// Presenting a client certificate to a server that asks for one.
        case presentClientCertificate
        /// Sending credentials to a remote that wants them.
        case sendCredentials
        /// Publishing a store to the remote (a push).
        case publish
        /// Renewing the signed release before it expires, which only its publisher can do.
        case renewRelease
        /// Checking the store's chunks against their hashes.
        case verifyStore
        /// Creating a store at `path`.
        case createStore(path: String)
        /// Generating an Ed25519 key pair.
        case generateKey
        /// Listing the model card keys the store requires.
        case listCardKeys
        /// Confirming a remote's id by naming it at a push, after checking it against devices.
        case confirmRemoteID(String)
        /// Enrolling a device with the publisher, so its signed reports count.
        case enrollDevice
        /// Naming which revision of a Hugging Face cache folder to add.
        case chooseRevision
        /// Removing a version although others name it (they keep working).
        case removeAnyway
        /// Adding a version number again that a remote holds with another id (pull it back instead).
        case reuseVersionNumber

        /// The remedy in the library's words.
        public var description: String {
            switch self {
            case let .given(s): return "from the \(s.rawValue) setting"
            case let .raise(s): return "if this is expected, raise the \(s.rawValue)"
            case .overwrite: return "checkout(force: true) writes into it"
            case .skipStaging: return "skipping staging overrides this"
            case .allowBreaking: return "allowing breaking changes overrides this"
            case .signRelease: return "publish one by pushing with a signing key"
            case .signFromScratch: return "to start again from this store's versions only: ReleaseSigning.fromScratch"
            case .trustPrivateCA: return "a private CA needs its CA bundle named (TLSFiles.caBundle or SLMSTORE_CA_BUNDLE)"
            case .presentClientCertificate: return "a server that asks for a client certificate needs TLSFiles.clientCertificate and clientKey"
            case .sendCredentials: return "set SLMSTORE_TOKEN or a token file, or add the host to ~/.netrc"
            case .publish: return "was a store pushed to it?"
            case .renewRelease: return "the publisher must renew the release"
            case .verifyStore: return "verify the store"
            case let .createStore(path): return "create one at \(path) first"
            case .generateKey: return "a PEM key as Ed25519Key generates"
            case .listCardKeys: return "the store's config lists them"
            case let .confirmRemoteID(id): return "push with PushOptions.remoteID = \(id) to confirm it"
            case .enrollDevice: return "enroll the device with DeviceEnrollment"
            case .chooseRevision: return "name the revision to add"
            case .removeAnyway: return "removing it anyway leaves them working"
            case .reuseVersionNumber: return "pull it back from that remote, or add the files as another version (AddOptions.reuseVersionNumber adds it anyway)"
            }
        }
    }

    /// This error with `cause` kept beneath it; an error that is not an `SLMError` becomes a
    /// `.failed` carrying its description.
    public func caused(by cause: any Error) -> SLMError {
        .caused(self, by: (cause as? SLMError) ?? .failed(String(describing: cause)))
    }

    /// This error with `remedy` attached.
    public func remedied(by remedy: Remedy) -> SLMError { .remedied(self, remedy) }

    /// The error itself, without the causes and remedies wrapped around it: what a caller
    /// matches on to decide what to do.
    public var kind: SLMError {
        switch self {
        case let .caused(error, _), let .remedied(error, _): return error.kind
        default: return self
        }
    }

    /// This error with its kind replaced by `transform(kind)`, the causes and remedies around it kept.
    public func mapKind(_ transform: (SLMError) -> SLMError) -> SLMError {
        switch self {
        case let .caused(error, cause): return .caused(error.mapKind(transform), by: cause)
        case let .remedied(error, remedy): return .remedied(error.mapKind(transform), remedy)
        default: return transform(self)
        }
    }

    /// The failure beneath this one, if one caused it.
    public var underlying: SLMError? {
        switch self {
        case let .caused(_, cause): return cause
        case let .remedied(error, _): return error.underlying
        default: return nil
        }
    }

    /// Every remedy attached to this error, outermost last.
    public var remedies: [Remedy] {
        switch self {
        case let .caused(error, _): return error.remedies
        case let .remedied(error, remedy): return error.remedies + [remedy]
        default: return []
        }
    }

    /// The one-line message a user sees.
    public var description: String {
        switch self {
        case let .input(path, problem): return "\(path): \(problem)"
        case let .argument(message): return message
        case let .notFound(message): return message
        case let .conflict(message): return message
        case let .notAStore(path, problem): return "\(path): \(problem)"
        case let .unsupportedFormat(path, what, found, supported):
            return "\(path): \(what) format \(found) is newer than this build of slmstore understands (\(supported)); upgrade slmstore"
        case let .damaged(path, problem): return "\(path): corrupt: \(problem)"
        case let .fileMismatch(path, problem, _): return "\(path): corrupt: \(problem)"
        case let .io(path, operation, code):
            return "\(path): \(operation) failed: \(String(cString: strerror(code)))"
        case let .remoteStatus(url, status, problem): return "\(url): HTTP \(status)\(problem.isEmpty ? "" : ": " + problem)"
        case let .transport(url, problem, _): return "\(url): \(problem)"
        case let .remote(url, problem): return "\(url): \(problem)"
        case let .untrusted(source, problem): return "\(source): untrusted: \(problem)"
        case .cancelled: return "interrupted"
        case let .failed(message): return message
        case let .invalidSetting(setting, problem): return "\(setting.rawValue) \(problem)"
        case let .caused(error, cause): return "\(error.description): \(cause.description)"
        case let .remedied(error, remedy): return "\(error.description) (\(remedy.description))"
        }
    }

    /// A stable name for the kind of error, one per case, for scripts and logs (the message may
    /// change between releases; the code does not).
    public var code: String {
        switch self {
        case .input: return "invalid-input"
        case .argument: return "invalid-argument"
        case .notFound: return "not-found"
        case .conflict: return "conflict"
        case .notAStore: return "not-a-store"
        case .unsupportedFormat: return "unsupported-format"
        case .damaged: return "damaged"
        case .fileMismatch: return "file-mismatch"
        case .io: return "io"
        case .remoteStatus: return "remote-status"
        case .transport: return "transport"
        case .remote: return "remote"
        case .untrusted: return "untrusted"
        case .cancelled: return "cancelled"
        case .failed: return "failed"
        case .invalidSetting: return "invalid-setting"
        case let .caused(error, _), let .remedied(error, _): return error.code
        }
    }

    /// Worth trying again after a pause: the network or the server may recover.
    public var isTransient: Bool {
        switch self {
        case let .transport(_, _, transient): return transient
        case let .remoteStatus(_, status, _): return status >= 500 || status == 429 || status == 408
        case let .caused(error, _), let .remedied(error, _): return error.isTransient
        default: return false
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
