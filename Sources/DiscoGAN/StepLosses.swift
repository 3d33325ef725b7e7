/// The named terms one training step reports. The one place that defines them: log.jsonl's keys,
/// the report's curves and groups, the progress line and the TensorBoard tags all come from
/// `StepLosses.Term`.
public struct StepLosses: Sendable, Equatable {
    public enum Term: String, CaseIterable, Sendable {
        // D step: per domain 0.5 (adversarial(D(real), 1) + adversarial(D(fake), 0)), their sum,
        // and the mean of sigmoid(D) on real (D(x)) and on generated (D(G(z))) images.
        case disTotal = "dis_total", disA = "dis_A", disB = "dis_B"
        case dRealA = "D_A_real", dFakeA = "D_A_fake", dRealB = "D_B_real", dFakeB = "D_B_fake"
        // G step: the total and, per domain, adversarial, feature matching, reconstruction and
        // (with --identity) identity terms, unweighted.
        case genTotal = "gen_total"
        case ganA = "gan_A", ganB = "gan_B", fmA = "fm_A", fmB = "fm_B"
        case reconA = "recon_A", reconB = "recon_B", idtA = "idt_A", idtB = "idt_B"
        // Schedules in force: the reconstruction rate (G steps) and the learning rate.
        case rate, lr

        /// What a term measures, for grouping in the report and the progress line.
        public enum Family: String, Sendable { case total, adversarial, featureMatching, reconstruction, identity, dOutput, schedule }
        public enum Network: Sendable { case generator, discriminator, none }

        public var family: Family {
            switch self {
            case .disTotal, .genTotal: return .total
            case .disA, .disB, .ganA, .ganB: return .adversarial
            case .fmA, .fmB: return .featureMatching
            case .reconA, .reconB: return .reconstruction
            case .idtA, .idtB: return .identity
            case .dRealA, .dFakeA, .dRealB, .dFakeB: return .dOutput
            case .rate, .lr: return .schedule
            }
        }

        public var network: Network {
            switch self {
            case .disTotal, .disA, .disB: return .discriminator
            case .genTotal, .ganA, .ganB, .fmA, .fmB, .reconA, .reconB, .idtA, .idtB: return .generator
            case .dRealA, .dFakeA, .dRealB, .dFakeB, .rate, .lr: return .none
            }
        }

        /// "A" or "B" for per-domain terms.
        public var domain: String? {
            switch self {
            case .disA, .dRealA, .dFakeA, .ganA, .fmA, .reconA, .idtA: return "A"
            case .disB, .dRealB, .dFakeB, .ganB, .fmB, .reconB, .idtB: return "B"
            default: return nil
            }
        }

        /// D(x) (true) or D(G(z)) (false), for the D-output terms.
        public var isReal: Bool? {
            switch self {
            case .dRealA, .dRealB: return true
            case .dFakeA, .dFakeB: return false
            default: return nil
            }
        }

        public static func adversarial(_ domain: String) -> Term { domain == "A" ? .ganA : .ganB }
        public static func featureMatching(_ domain: String) -> Term { domain == "A" ? .fmA : .fmB }
        public static func identity(_ domain: String) -> Term { domain == "A" ? .idtA : .idtB }
        public static func discriminator(_ domain: String) -> Term { domain == "A" ? .disA : .disB }
        public static func dOutput(_ domain: String, real: Bool) -> Term {
            domain == "A" ? (real ? .dRealA : .dFakeA) : (real ? .dRealB : .dFakeB)
        }
    }

    public private(set) var values: [Term: Float] = [:]

    public init() {}

    public subscript(term: Term) -> Float? {
        get { values[term] }
        set { values[term] = newValue }
    }

    /// By log key (`"gen_total"`, ...); nil for a key that is not a term.
    public subscript(key: String) -> Float? { Term(rawValue: key).flatMap { values[$0] } }

    /// (log key, value) in the terms' declared order.
    public var entries: [(key: String, value: Float)] {
        Term.allCases.compactMap { t in values[t].map { (t.rawValue, $0) } }
    }

    public var isEmpty: Bool { values.isEmpty }

    /// The terms of one family, e.g. the adversarial ones of a G step.
    public func values(of family: Term.Family, network: Term.Network? = nil) -> [Float] {
        Term.allCases.filter { $0.family == family && (network == nil || $0.network == network) }.compactMap { values[$0] }
    }
}

extension StepLosses: ExpressibleByDictionaryLiteral {
    /// By log key: `["gen_total": 0.8, "dis_total": 1.4]`. A key that is not a term traps.
    public init(dictionaryLiteral elements: (String, Float)...) {
        self.init()
        for (k, v) in elements {
            guard let t = Term(rawValue: k) else { preconditionFailure("StepLosses: '\(k)' is not a term") }
            values[t] = v
        }
    }

    /// Each term of `other` replaces this one's (the progress line keeps the latest of each).
    public mutating func update(with other: StepLosses) {
        for (t, v) in other.values { values[t] = v }
    }
}
