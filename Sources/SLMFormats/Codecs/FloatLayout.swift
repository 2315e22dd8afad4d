// The element layout of a chunk that lies inside one float tensor: what the planes codec needs
// to split it into byte planes.

/// How the bytes of a chunk that lies inside one float tensor are laid out, so the encoder can
/// split them into planes: element size, which plane transform, and where the chunk starts
/// within an element.
public struct FloatLayout: Equatable, Sendable {
    /// How elements are split into planes (a byte of the planes header).
    public enum Transform: UInt8, Sendable {
        /// Plane j holds byte E-1-j of every element (most significant first).
        case byteSplit = 0
        /// The 8 exponent bits in plane 0, sign and top mantissa bits in plane 1, then the
        /// remaining mantissa bytes (bf16: 2 planes; f32: 4 planes).
        case exponentSplit = 1
    }

    /// Bytes per element: 2 (bf16, f16) or 4 (f32).
    public var elementSize: Int
    /// The plane split.
    public var transform: Transform
    /// The byte of an element the chunk starts at (0 when it starts on an element).
    public var phase: Int

    /// A layout from its parts.
    public init(elementSize: Int, transform: Transform, phase: Int) {
        self.elementSize = elementSize
        self.transform = transform
        self.phase = phase
    }
}
