// GPT2SequenceLogProbs.swift: what preference training (DPO) needs from GPT2LMHead beyond the causal-LM loss:
//   - per-row log-probabilities of the labelled tokens (the summed shifted NLL of each row, negated), from an
//     evaluation forward (`forward(batch, labels:, gradientScale: nil, …)`);
//   - a backward whose gradient scale differs per row: DPO's loss is a function of each sequence's summed
//     log-probability, so dLoss/dlogits of row b is w_b · (softmax − onehot) with a weight w_b known only after the
//     forward of every row. The head's logits are recomputed chunk by chunk from the saved ln_f output (the body's
//     activations are intact after an evaluation forward), then the body's backward runs as usual;
//     With a frozen head (LoRA) no recompute is needed: the unit-scale training forward leaves each row's input
//     gradient in place, and the rows are scaled before the body's backward;
//   - running a forward with the LoRA adapter switched off (the base model: DPO's reference under LoRA, as peft's
//     `disable_adapter()`), with no second copy of the weights.
// Deliberately not here: the DPO loss itself and its data (Training/DPOTask.swift).
import CBLAS
import CKernels

extension GPT2LMHead {
    /// Log-probability of the labelled tokens of each row of the last forward (which had labels): Σ_t −nll[b, t],
    /// summed in Double over the counted positions, [B].
    public func rowLogProbs() -> [Double] {
        let B = body.lastB, T = body.lastT
        return (0..<B).map { b in
            var s = 0.0
            for t in 0..<T where targets[b * T + t] >= 0 { s -= Double(nll[b * T + t]) }
            return s
        }
    }

    /// Accumulates (+=) the gradients of Σ_b rowScales[b] · NLL_b, where NLL_b is row b's summed NLL of the last forward
    /// (run with labels and gradientScale nil; its activations must be untouched since). Zero the gradients before.
    public func backward(rowScales: [Float]) {
        let B = body.lastB, T = body.lastT, V = config.vocabSize, C = config.hidden
        precondition(rowScales.count == B, "one scale per row: \(rowScales.count) for \(B) rows")
        let wte = UnsafePointer(body.P(body.wte))
        for b in 0..<B {
            var r0 = b * T
            while r0 < (b + 1) * T {
                let R = min(chunkRows, (b + 1) * T - r0)
                let x = UnsafePointer(body.xf + r0 * C)
                sgemm(transA: false, transB: true, m: R, n: V, k: C, alpha: 1, x, lda: C, wte, ldb: C, beta: 0, logitChunk, ldc: V)
                g2_xent_fwd_bwd(logitChunk, R, V, targets + r0, rowScales[b], 1, lse + r0, nll + r0, rowMax + r0)
                sgemm(transA: false, transB: false, m: R, n: C, k: V, alpha: 1, logitChunk, lda: V, wte, ldb: C,
                      beta: 0, body.dXf + r0 * C, ldc: C)
                if body.trains(body.wte) {
                    sgemm(transA: true, transB: false, m: V, n: C, k: R, alpha: 1, logitChunk, lda: V, x, ldb: C,
                          beta: 1, body.G(body.wte), ldc: C)
                }
                r0 += R
            }
        }
        body.backward()
    }

    /// Whether the tied head's weight (wte) takes no gradient (a frozen base under LoRA): then `forward` with
    /// gradientScale 1 already gives every row's unit input gradient, and `backward(scalingRows:)` needs no recompute.
    public var headIsFrozen: Bool { !body.trains(body.wte) }

    /// For a frozen head only: after `forward(batch, labels:, gradientScale: 1, …)` (dLoss/d(ln_f output) of each row's
    /// summed NLL is in place), scales row b's input gradient by rowScales[b] and runs the body's backward: the
    /// gradients of Σ_b rowScales[b] · NLL_b, without recomputing the logits.
    public func backward(scalingRows rowScales: [Float]) {
        let B = body.lastB, T = body.lastT, C = config.hidden
        precondition(headIsFrozen, "backward(scalingRows:) needs a frozen LM head; use backward(rowScales:)")
        precondition(rowScales.count == B, "one scale per row: \(rowScales.count) for \(B) rows")
        for b in 0..<B {
            let p = body.dXf + b * T * C, s = rowScales[b]
            for i in 0..<(T * C) { p[i] *= s }
        }
        body.backward()
    }

    /// Runs `work` with the LoRA adapter (if any) switched off, so forwards use the base weights alone; the adapter is
    /// attached again afterwards. Only for forwards without gradients.
    public func withAdapterDisabled<R>(_ work: () throws -> R) rethrows -> R {
        let adapter = body.adapter, frozen = body.frozenBase
        body.adapter = nil
        body.frozenBase = true
        defer { body.adapter = adapter; body.frozenBase = frozen }
        return try work()
    }
}
