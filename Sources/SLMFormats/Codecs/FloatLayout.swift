// The element layout of a chunk that lies inside one float tensor: what the planes codec needs
// to split it into byte planes.

/// How the bytes of a chunk that lies inside one float tensor are laid out, so the encoder can
/// split them into planes: element size, which plane transform, and where the chunk starts
/// within an element.
public struct FloatLayout: Equatable, Sendable {
    public enum Transform: UInt8, Sendable {
        /// Plane j holds byte E-1-j of every element (most significant first).
        case byteSplit = 0
        /// The 8 exponent bits in plane 0, sign and top mantissa bits in plane 1, then the
        /// remaining mantissa bytes (bf16: 2 planes; f32: 4 planes).
        case exponentSplit = 1
    }

    public var elementSize: Int
    public var transform: Transform
    public var phase: Int

    public init(elementSize: Int, transform: Transform, phase: Int) {
        self.elementSize = elementSize
        self.transform = transform
        self.phase = phase
    }
}
