import Foundation
import DiscoCore

/// The Fashion-MNIST classifier the GAN evaluation scores samples with (`disco gan eval`), trained
/// by disco itself on its own kernels and cached under `checkpoints/fashion-classifier/`.
///
/// Input NHWC [N, 28, 28, 1], pixels in [0, 1], mapped to [-1, 1] first. Then
///     c1: Conv(1 -> 32, k4 s2 p1, no bias)        28 -> 14, LeakyReLU 0.2
///     c2: Conv(32 -> 64, k4 s2 p1, no bias)       14 -> 7,  BatchNorm, LeakyReLU 0.2
///     flatten [N, 7, 7, 64] in NHWC order -> [N, 3136]
///     fc1: Linear 3136 -> 128, ReLU               the penultimate features [N, 128]
///     fc2: Linear 128 -> K (classes)              logits [N, K]
/// Trained with softmax cross-entropy and Adam (betas 0.9, 0.999), the learning rate following a
/// cosine from `learningRate` to 0 over the run; PyTorch's default initialisation.
public final class FashionClassifier {
    public static let defaultDirectory = "checkpoints/fashion-classifier"
    public static let weightsFile = "classifier.safetensors", infoFile = "classifier.json"
    public static let format = "disco-fashion-classifier", formatVersion = 1
    public static let featureCount = 128
    public static let architecture = "conv 1->32 k4s2p1 LReLU; conv 32->64 k4s2p1 BN LReLU; linear 3136->128 ReLU (features); linear 128->K"

    public let classNames: [String]
    /// c1, c2.
    public let trunk: Network
    /// fc1, fc2.
    public let head: MLP
    /// What the cached file says about it (test accuracy, data); nil until trained or loaded.
    public var info: Info?

    /// Training settings.
    public struct Settings: Codable, Equatable, Sendable {
        public var epochs = 5
        public var batch = 64
        public var learningRate: Float = 2e-3
        public var seed: UInt64 = 0
        public init(epochs: Int = 5, batch: Int = 64, learningRate: Float = 2e-3, seed: UInt64 = 0) {
            self.epochs = epochs; self.batch = batch; self.learningRate = learningRate; self.seed = seed
        }
    }

    /// `classifier.json`: what the classifier is and how well it does.
    public struct Info: Codable, Equatable, Sendable {
        public var format = FashionClassifier.format
        public var version = FashionClassifier.formatVersion
        public var architecture = FashionClassifier.architecture
        public var classes: [String]
        /// Accuracy on the test folder, and its size.
        public var testAccuracy: Double
        public var testCount: Int
        public var testData: String
        public var trainCount: Int
        public var trainData: String
        public var settings: Settings
        public var seconds: Double

        public init(classes: [String], testAccuracy: Double, testCount: Int, testData: String, trainCount: Int,
                    trainData: String, settings: Settings, seconds: Double) {
            self.classes = classes; self.testAccuracy = testAccuracy; self.testCount = testCount; self.testData = testData
            self.trainCount = trainCount; self.trainData = trainData; self.settings = settings; self.seconds = seconds
        }

        enum CodingKeys: String, CodingKey {
            case format, version, architecture, classes, settings, seconds
            case testAccuracy = "test_accuracy", testCount = "test_count", testData = "test_data"
            case trainCount = "train_count", trainData = "train_data"
        }
    }

    public struct ClassifierError: Error, CustomStringConvertible {
        public let description: String
        public init(_ d: String) { description = d }
    }

    public init(classNames: [String]) {
        precondition(classNames.count >= 2, "FashionClassifier: \(classNames.count) classes, need at least 2")
        self.classNames = classNames
        trunk = Network(blocks: [
            BlockSpec("c1", .conv, 1, 32, batchNorm: false, activation: .leakyReLU),
            BlockSpec("c2", .conv, 32, 64, batchNorm: true, activation: .leakyReLU),
        ])
        head = MLP(sizes: [7 * 7 * 64, Self.featureCount, classNames.count], hidden: .relu, output: .identity)
    }

    /// PyTorch's default initialisation of every layer, from `seed`.
    public func initialize(seed: UInt64) {
        var rng = Xoshiro256(seed: seed)
        trunk.initializeWeights(rng: &rng)
        head.initialize(rng: &rng)
    }

    /// One forward pass. `.train` uses batch statistics (and updates the running ones).
    /// Returns logits [N, K], features [N, 128] and what `backward` needs.
    public func forward(_ x: Tensor, mode: Mode, record: Bool) -> (logits: Tensor, features: Tensor, trunk: Trace, head: [Tensor]) {
        precondition(x.shape.count == 4 && Array(x.shape.dropFirst()) == [28, 28, 1],
                     "FashionClassifier: input \(x.shape), expected [N, 28, 28, 1]")
        let n = x.shape[0]
        let scaled = Tensor(uninitialized: x.shape)
        for i in 0..<x.count { scaled.data[i] = 2 * x.data[i] - 1 }
        let t = trunk.forward(scaled, mode: mode, record: record)
        let h = head.forward(t.output.reshaped([n, 7 * 7 * 64]))
        return (h.output, h.trace[1], t.trace, h.trace)
    }

    /// Predicted labels and penultimate features of `x` [N, 28, 28, 1] (eval mode), in chunks.
    public func classify(_ x: Tensor, chunk: Int = 500) -> (labels: [Int], features: Tensor) {
        let n = x.shape[0], per = 28 * 28
        let features = Tensor(uninitialized: [n, Self.featureCount])
        var labels = [Int](repeating: 0, count: n)
        let k = classNames.count
        for s in stride(from: 0, to: n, by: chunk) {
            let m = min(chunk, n - s)
            let out = forward(Tensor(viewOf: x, offset: s * per, shape: [m, 28, 28, 1]), mode: .eval, record: false)
            (features.data + s * Self.featureCount).update(from: out.features.data, count: m * Self.featureCount)
            for r in 0..<m {
                let row = out.logits.data + r * k
                var best = 0
                for j in 1..<k where row[j] > row[best] { best = j }
                labels[s + r] = best
            }
        }
        return (labels, features)
    }

    /// Share of `data`'s images whose predicted label is their own.
    public func accuracy(on data: EvalImages) -> Double {
        guard let truth = data.labels, data.count > 0 else { return 0 }
        let predicted = classify(data.images).labels
        return Double(zip(predicted, truth).filter { $0 == $1 }.count) / Double(data.count)
    }

    /// Trains a new classifier on `data` (labelled). `progress` is called after each epoch with
    /// (epoch from 1, mean training loss, training accuracy of that epoch, seconds so far).
    public static func train(on data: EvalImages, settings: Settings,
                             progress: (Int, Double, Double, Double) -> Void = { _, _, _, _ in }) -> FashionClassifier {
        guard let labels = data.labels else { preconditionFailure("FashionClassifier.train: the data has no labels") }
        precondition(settings.batch >= 2 && data.count >= settings.batch, "FashionClassifier.train: batch \(settings.batch) for \(data.count) images")
        let model = FashionClassifier(classNames: data.classNames)
        model.initialize(seed: settings.seed)
        let hp = Adam.Hyperparameters(learningRate: settings.learningRate, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0)
        let adamTrunk = Adam(parameterCount: model.trunk.parameters.count, hyperparameters: hp)
        let adamHead = Adam(parameterCount: model.head.parameters.count, hyperparameters: hp)
        var rng = Xoshiro256(seed: settings.seed &+ 1)
        let b = settings.batch, per = 28 * 28, perEpoch = data.count / b
        let total = perEpoch * settings.epochs
        let x = Tensor(uninitialized: [b, 28, 28, 1])
        var batchLabels = [Int](repeating: 0, count: b)
        let start = Date()
        var step = 0
        for epoch in 1...max(settings.epochs, 1) {
            var order = Array(0..<data.count)
            for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            var lossSum = 0.0, correct = 0
            for it in 0..<perEpoch {
                for r in 0..<b {
                    let i = order[it * b + r]
                    (x.data + r * per).update(from: data.images.data + i * per, count: per)
                    batchLabels[r] = labels[i]
                }
                model.trunk.zeroGradients(); model.head.zeroGradients()
                let out = model.forward(x, mode: .train, record: true)
                let loss = softmaxCrossEntropyLoss(logits: out.logits, labels: batchLabels)
                let dFlat = model.head.backward(out.head, dOutput: loss.grad)
                model.trunk.backward(out.trunk, dOutput: dFlat.reshaped([b, 7, 7, 64]), inputGradient: false)
                let lr = settings.learningRate * Float(0.5 * (1 + cos(Double.pi * Double(step) / Double(max(total, 1)))))
                adamTrunk.hp.learningRate = lr; adamHead.hp.learningRate = lr
                adamTrunk.update(params: model.trunk.parameters.values, grads: model.trunk.parameters.grads)
                adamHead.update(params: model.head.parameters, grads: model.head.grads)
                step += 1
                lossSum += Double(loss.loss)
                let k = model.classNames.count
                for r in 0..<b {
                    let row = out.logits.data + r * k
                    var best = 0
                    for j in 1..<k where row[j] > row[best] { best = j }
                    if best == batchLabels[r] { correct += 1 }
                }
            }
            progress(epoch, lossSum / Double(max(perEpoch, 1)), Double(correct) / Double(max(perEpoch * b, 1)),
                     Date().timeIntervalSince(start))
        }
        return model
    }

    // MARK: the cached files

    /// Every tensor by name: c1/c2 in PyTorch's Conv2d layout (as `Network.stateDict`), fc1/fc2
    /// as nn.Linear ([out, in], [out]); fc1's inputs are the NHWC flatten of c2's output.
    public func stateDict() -> [(String, Tensor)] {
        var out = trunk.stateDict()
        for (l, name) in ["fc1", "fc2"].enumerated() {
            out.append(("\(name).weight", head.weights[l].copy()))
            out.append(("\(name).bias", head.biases[l].copy()))
        }
        return out
    }

    /// Writes `dir/classifier.safetensors`, then `dir/classifier.json` (each atomically, through
    /// FileWriter; the json last, so a folder with a json has its weights).
    public func save(to dir: String, info: Info) throws {
        try Checkpoint.createDirectory(dir)
        let weights = Safetensors.serialize(stateDict(), metadata: ["format": Self.format, "version": String(Self.formatVersion)])
        try FileWriter.write(weights, to: dir + "/" + Self.weightsFile)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try FileWriter.write(try encoder.encode(info), to: dir + "/" + Self.infoFile)
        self.info = info
    }

    /// Whether `dir` holds a saved classifier (its json; `load` checks the rest).
    public static func exists(in dir: String) -> Bool {
        FileManager.default.fileExists(atPath: dir + "/" + infoFile)
    }

    /// Reads a classifier saved by `save`. Any damage (unreadable or foreign json, missing or
    /// malformed weights, a shape that does not fit, non-finite values) is refused naming the file
    /// and saying how to rebuild it.
    public static func load(from dir: String) throws -> FashionClassifier {
        let infoPath = dir + "/" + infoFile, weightsPath = dir + "/" + weightsFile
        let fix = "delete \(dir) and rebuild it with `disco gan classifier --data DIR --out \(dir)` (DIR from `disco data fashion-mnist classes`)"
        guard let bytes = FileManager.default.contents(atPath: infoPath) else {
            throw ClassifierError("\(infoPath): missing or unreadable; build the classifier with `disco gan classifier --data DIR --out \(dir)`")
        }
        let info: Info
        do { info = try JSONDecoder().decode(Info.self, from: bytes) } catch {
            throw ClassifierError("\(infoPath): not a disco classifier description (\(describe(error))); \(fix)")
        }
        guard info.format == format, info.version == formatVersion else {
            throw ClassifierError("\(infoPath): format \(info.format) version \(info.version), this disco reads \(format) version \(formatVersion); \(fix)")
        }
        guard info.classes.count >= 2, (0...1).contains(info.testAccuracy) else {
            throw ClassifierError("\(infoPath): \(info.classes.count) classes, test accuracy \(info.testAccuracy): not a trained classifier; \(fix)")
        }
        let file: Safetensors.File
        do { file = try Safetensors.read(path: weightsPath) } catch { throw ClassifierError("\(error); \(fix)") }
        let model = FashionClassifier(classNames: info.classes)
        var tensors: [String: Tensor] = [:]
        for (name, want) in model.stateDict() {
            guard let e = file.entries[name] else { throw ClassifierError("\(weightsPath): no tensor '\(name)'; \(fix)") }
            guard e.dtype == "F32", e.shape == want.shape else {
                throw ClassifierError("\(weightsPath): tensor '\(name)' is \(e.dtype) \(e.shape), the classifier of \(info.classes.count) classes needs F32 \(want.shape); \(fix)")
            }
            guard e.floats.allSatisfy(\.isFinite) else { throw ClassifierError("\(weightsPath): tensor '\(name)' holds NaN or infinite values; \(fix)") }
            tensors[name] = e.tensor
        }
        if let v = tensors["c2.bn.running_var"], v.array.contains(where: { $0 < 0 }) {
            throw ClassifierError("\(weightsPath): tensor 'c2.bn.running_var' has a negative variance; \(fix)")
        }
        do { try model.trunk.load(stateDict: tensors) } catch { throw ClassifierError("\(weightsPath): \(error); \(fix)") }
        for (l, name) in ["fc1", "fc2"].enumerated() {
            model.head.weights[l].copy(from: tensors["\(name).weight"]!)
            model.head.biases[l].copy(from: tensors["\(name).bias"]!)
        }
        model.info = info
        return model
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "field '\(key.stringValue)' is missing"
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c):
            return "field '\(c.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type"
        case DecodingError.dataCorrupted: return "not valid JSON"
        default: return "\(error)"
        }
    }
}

extension FashionClassifier {
    /// Trains the classifier on DATA/train, measures it on DATA/test and saves it to `out`.
    public static func build(data: String, out: String, settings: Settings, log: (String) -> Void) throws -> FashionClassifier {
        let train: EvalImages, test: EvalImages
        do {
            train = try EvalImages.load(labelledFolder: data + "/train", option: "--data")
            test = try EvalImages.load(labelledFolder: data + "/test", option: "--data")
        } catch { throw DiscoError("\(error)") }
        guard train.classNames == test.classNames else {
            throw DiscoError("--data \(data): train has classes \(train.classNames), test \(test.classNames); they must match")
        }
        guard train.count >= settings.batch else {
            throw DiscoError("--data \(data)/train: \(train.count) images, fewer than one batch (\(settings.batch))")
        }
        log("training the classifier on \(train.count) images of \(data)/train (\(train.classNames.count) classes), \(settings.epochs) epochs")
        let start = Date()
        let model = Self.train(on: train, settings: settings) { epoch, loss, acc, seconds in
            log(String(format: "epoch %d/%d  loss %.4f  train accuracy %.2f%%  %.0f s", epoch, settings.epochs, loss, 100 * acc, seconds))
        }
        let accuracy = model.accuracy(on: test)
        let abs = { (p: String) in URL(fileURLWithPath: p).standardizedFileURL.path }
        let info = Info(classes: train.classNames, testAccuracy: accuracy, testCount: test.count,
                        testData: abs(data + "/test"), trainCount: train.count, trainData: abs(data + "/train"),
                        settings: settings, seconds: Date().timeIntervalSince(start))
        do { try model.save(to: out, info: info) } catch { throw DiscoError("--out \(out): \(error)") }
        return model
    }

    /// The cached classifier in `dir`; when there is none and `real` is DATA/test beside a DATA/train,
    /// trains one first (default settings), reporting progress on stderr.
    public static func loadOrBuild(directory dir: String, real: String) throws -> FashionClassifier {
        if exists(in: dir) {
            do { return try load(from: dir) } catch { throw DiscoError("--classifier: \(error)") }
        }
        let data = (URL(fileURLWithPath: real).standardizedFileURL.path as NSString).deletingLastPathComponent
        var isDir: ObjCBool = false
        guard (real as NSString).standardizingPath.hasSuffix("test"),
              FileManager.default.fileExists(atPath: data + "/train", isDirectory: &isDir), isDir.boolValue else {
            throw DiscoError("--classifier \(dir): no classifier there; build it with `disco gan classifier --data DATA --out \(dir)` (DATA from `disco data fashion-mnist classes --out DATA`)")
        }
        FileWriter.printError("no classifier in \(dir): training one on \(data)/train first (a few minutes; cached for later runs)")
        return try build(data: data, out: dir, settings: .init()) { FileWriter.printError($0) }
    }
}
