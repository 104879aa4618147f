// TEMPORARY compile stubs (removed at merge).
public struct TokenBatch { public init(batchSize: Int, seqLen: Int, inputIds: [Int32], attentionMask: [Int32], tokenTypeIds: [Int32], sampleIndices: [Int]) { self.attentionMask = attentionMask }
  public var attentionMask: [Int32] }
public struct DropoutContext { public init(seed: UInt64, step: Int) {} }
public final class EncoderClassifier {
  public static func makeLayout(config: ModelConfig) -> ParameterLayout { fatalError() }
  public init(config: ModelConfig, parameters: ParameterStore, maxBatch: Int, maxSeq: Int) {}
  public func forward(_ batch: TokenBatch, dropout: DropoutContext?) -> UnsafeBufferPointer<Float> { fatalError() }
  public func backward(dLogits: UnsafeBufferPointer<Float>) {}
}
public enum Loss { public static func crossEntropy(logits: UnsafeBufferPointer<Float>, labels: [Int32], batch: Int, classes: Int, scale: Float, dLogits: UnsafeMutableBufferPointer<Float>) -> Double { 0 } }
public struct BenchmarkResult { public var jsonLine: String }
public enum ModelBenchmark { public static func run(config: ModelConfig, batch: Int, seq: Int, steps: Int, warmup: Int, threads: Int) -> BenchmarkResult { fatalError() } }
