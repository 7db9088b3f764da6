"""The exact allowlist of Keras names a saved model's configuration may use (Keras 3).

Written out from Keras 3.15's public API and reviewed, not computed at load: a name is
trusted because it is listed here. Everything else (Lambda layers, custom layers, any
other module) is refused before Keras builds anything, unless the caller trusts it by
name (``amber.trust``). ``DENIED_LAYERS`` lists the built-in layers left out, with why.
``tests/adapters/test_keras_names.py`` checks every name against the installed Keras.
"""

from __future__ import annotations


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Classes a configuration may name, by the module it names them under.
CLASSES: dict[str, frozenset[str]] = {
    "keras.layers": _names(
        """
        Activation ActivityRegularization AdaptiveAveragePooling1D
        AdaptiveAveragePooling2D AdaptiveAveragePooling3D AdaptiveMaxPooling1D
        AdaptiveMaxPooling2D AdaptiveMaxPooling3D Add AdditiveAttention AlphaDropout
        Attention AugMix AutoContrast Average AveragePooling1D AveragePooling2D
        AveragePooling3D AvgPool1D AvgPool2D AvgPool3D BatchNormalization Bidirectional
        CategoryEncoding CenterCrop Concatenate
        ContrastLimitedAdaptiveHistogramEqualization Conv1D Conv1DTranspose Conv2D
        Conv2DTranspose Conv3D Conv3DTranspose ConvLSTM1D ConvLSTM2D ConvLSTM3D
        Convolution1D Convolution1DTranspose Convolution2D Convolution2DTranspose
        Convolution3D Convolution3DTranspose Cropping1D Cropping2D Cropping3D CutMix Dense
        DepthwiseConv1D DepthwiseConv2D Discretization Dot Dropout ELU EinsumDense
        Embedding Equalization Flatten GRU GRUCell GaussianDropout GaussianNoise
        GlobalAveragePooling1D GlobalAveragePooling2D GlobalAveragePooling3D
        GlobalAvgPool1D GlobalAvgPool2D GlobalAvgPool3D GlobalMaxPool1D GlobalMaxPool2D
        GlobalMaxPool3D GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D
        GroupNormalization GroupQueryAttention HashedCrossing Hashing Identity InputLayer
        LSTM LSTMCell LayerNormalization LeakyReLU Masking MaxNumBoundingBoxes MaxPool1D
        MaxPool2D MaxPool3D MaxPooling1D MaxPooling2D MaxPooling3D Maximum MelSpectrogram
        Minimum MixUp MultiHeadAttention Multiply Normalization PReLU Permute Pipeline
        RMSNormalization RNN RandAugment RandomBrightness RandomColorDegeneration
        RandomColorJitter RandomContrast RandomCrop RandomElasticTransform RandomErasing
        RandomFlip RandomGaussianBlur RandomGrayscale RandomHue RandomInvert
        RandomPerspective RandomPosterization RandomRotation RandomSaturation
        RandomSharpness RandomShear RandomTranslation RandomZoom ReLU RepeatVector
        Rescaling Reshape Resizing ReversibleEmbedding STFTSpectrogram SeparableConv1D
        SeparableConv2D SeparableConvolution1D SeparableConvolution2D SimpleRNN
        SimpleRNNCell Softmax Solarization SpatialDropout1D SpatialDropout2D
        SpatialDropout3D SpectralNormalization StackedRNNCells Subtract TimeDistributed
        UnitNormalization UpSampling1D UpSampling2D UpSampling3D ZeroPadding1D
        ZeroPadding2D ZeroPadding3D
        """
    ),
    "keras.initializers": _names(
        """
        Constant GlorotNormal GlorotUniform HeNormal HeUniform Identity
        IdentityInitializer LecunNormal LecunUniform Ones Orthogonal OrthogonalInitializer
        RandomNormal RandomUniform STFT STFTInitializer TruncatedNormal VarianceScaling
        Zeros
        """
    ),
    "keras.regularizers": _names(
        """
        L1 L1L2 L2 OrthogonalRegularizer
        """
    ),
    "keras.constraints": _names(
        """
        MaxNorm MinMaxNorm NonNeg UnitNorm
        """
    ),
    "keras.losses": _names(
        """
        BinaryCrossentropy BinaryFocalCrossentropy CTC CategoricalCrossentropy
        CategoricalFocalCrossentropy CategoricalGeneralizedCrossEntropy CategoricalHinge
        Circle CosineSimilarity Dice Hinge Huber KLDivergence LogCosh MeanAbsoluteError
        MeanAbsolutePercentageError MeanSquaredError MeanSquaredLogarithmicError Poisson
        SparseCategoricalCrossentropy SquaredHinge Tversky
        """
    ),
    "keras.metrics": _names(
        """
        AUC Accuracy BinaryAccuracy BinaryCrossentropy BinaryIoU CategoricalAccuracy
        CategoricalCrossentropy CategoricalHinge ConcordanceCorrelation CosineSimilarity
        F1Score FBetaScore FalseNegatives FalsePositives Hinge IoU KLDivergence
        LogCoshError Mean MeanAbsoluteError MeanAbsolutePercentageError MeanIoU
        MeanMetricWrapper MeanSquaredError MeanSquaredLogarithmicError OneHotIoU
        OneHotMeanIoU PearsonCorrelation Poisson Precision PrecisionAtRecall R2Score
        Recall RecallAtPrecision RootMeanSquaredError SensitivityAtSpecificity
        SparseCategoricalAccuracy SparseCategoricalCrossentropy
        SparseTopKCategoricalAccuracy SpecificityAtSensitivity SquaredHinge Sum
        TopKCategoricalAccuracy TrueNegatives TruePositives
        """
    ),
    "keras.optimizers": _names(
        """
        Adadelta Adafactor Adagrad Adam AdamW Adamax Ftrl Lamb Lion LossScaleOptimizer
        MultiOptimizer Muon Nadam OptimizerMap RMSprop SGD ScheduleFreeAdamW
        """
    ),
    "keras.optimizers.schedules": _names(
        """
        CosineDecay CosineDecayRestarts ExponentialDecay InverseTimeDecay
        PiecewiseConstantDecay PolynomialDecay
        """
    ),
    "keras.dtype_policies": _names(
        """
        DTypePolicy FloatDTypePolicy
        """
    ),  # The models themselves.
    "keras": _names("Sequential DTypePolicy FloatDTypePolicy"),
    "keras.src.models.functional": _names("Functional"),
    "keras.models": _names("Sequential"),
}

# Built-in layers that are not in CLASSES, and why.
DENIED_LAYERS: dict[str, str] = {
    "Lambda": "holds Python bytecode (marshal); loading it runs code from the file",
    "TFSMLayer": "loads a TensorFlow SavedModel from a path named in the configuration",
    "TorchModuleWrapper": "wraps an arbitrary torch module, stored with torch.save (pickle)",
    "JaxLayer": "wraps arbitrary JAX functions (code)",
    "FlaxLayer": "wraps an arbitrary Flax module (code)",
    "TextVectorization": "its vocabulary may name a file to read; kept in assets, not weights",
    "StringLookup": "its vocabulary may name a file to read; kept in assets, not weights",
    "IntegerLookup": "its vocabulary may name a file to read; kept in assets, not weights",
    "Layer": "the abstract base class (subclasses are custom code)",
    "Wrapper": "an abstract base class (subclasses are custom code)",
    "InputSpec": "not a layer",
}

# Strings Keras resolves through its own tables, by the kind of value they name.
ACTIVATIONS = _names(
    """
    celu elu exponential gelu glu hard_shrink hard_sigmoid hard_silu hard_swish hard_tanh
    leaky_relu linear log_sigmoid log_softmax mish relu relu6 selu sigmoid silu
    soft_shrink softmax softplus softsign sparse_plus sparse_sigmoid sparsemax squareplus
    swish tanh tanh_shrink threshold
    """
)
LOSSES = _names(
    """
    BCE BinaryCrossentropy BinaryFocalCrossentropy CTC CategoricalCrossentropy
    CategoricalFocalCrossentropy CategoricalHinge Circle CosineSimilarity Dice Hinge Huber
    KLD KLDivergence LogCosh MAE MAPE MSE MSLE MeanAbsoluteError
    MeanAbsolutePercentageError MeanSquaredError MeanSquaredLogarithmicError Poisson
    SparseCategoricalCrossentropy SquaredHinge Tversky bce binary_crossentropy
    binary_focal_crossentropy categorical_crossentropy categorical_focal_crossentropy
    categorical_hinge circle cosine_similarity ctc dice hinge huber kl_divergence kld
    log_cosh mae mape mean_absolute_error mean_absolute_percentage_error
    mean_squared_error mean_squared_logarithmic_error mse msle poisson
    sparse_categorical_crossentropy squared_hinge tversky
    """
)
METRICS = _names(
    """
    AUC Accuracy BCE BinaryAccuracy BinaryCrossentropy BinaryIoU CategoricalAccuracy
    CategoricalCrossentropy CategoricalHinge ConcordanceCorrelation CosineSimilarity
    F1Score FBetaScore FalseNegatives FalsePositives Hinge IoU KLDivergence LogCoshError
    MAE MAPE MSE MSLE Mean MeanAbsoluteError MeanAbsolutePercentageError MeanIoU
    MeanMetricWrapper MeanSquaredError MeanSquaredLogarithmicError OneHotIoU OneHotMeanIoU
    PearsonCorrelation Poisson Precision PrecisionAtRecall R2Score Recall
    RecallAtPrecision RootMeanSquaredError SensitivityAtSpecificity
    SparseCategoricalAccuracy SparseCategoricalCrossentropy SparseTopKCategoricalAccuracy
    SpecificityAtSensitivity SquaredHinge Sum TopKCategoricalAccuracy TrueNegatives
    TruePositives accuracy auc bce binary_accuracy binary_crossentropy binary_io_u
    categorical_accuracy categorical_crossentropy categorical_hinge
    concordance_correlation cosine_similarity f1_score f_beta_score false_negatives
    false_positives hinge io_u kl_divergence log_cosh_error mae mape mean
    mean_absolute_error mean_absolute_percentage_error mean_io_u mean_metric_wrapper
    mean_squared_error mean_squared_logarithmic_error mse msle one_hot_io_u
    one_hot_mean_io_u pearson_correlation poisson precision precision_at_recall r2_score
    recall recall_at_precision root_mean_squared_error sensitivity_at_specificity
    sparse_categorical_accuracy sparse_categorical_crossentropy
    sparse_top_k_categorical_accuracy specificity_at_sensitivity squared_hinge sum
    top_k_categorical_accuracy true_negatives true_positives acc accuracy crossentropy ce
    """
)
INITIALIZERS = _names(
    """
    Constant GlorotNormal GlorotUniform HeNormal HeUniform Identity IdentityInitializer
    LecunNormal LecunUniform Ones Orthogonal OrthogonalInitializer RandomNormal
    RandomUniform STFT STFTInitializer TruncatedNormal VarianceScaling Zeros constant
    glorot_normal glorot_uniform he_normal he_uniform identity lecun_normal lecun_uniform
    normal one ones orthogonal random_normal random_uniform stft truncated_normal uniform
    variance_scaling zero zeros
    """
)
OPTIMIZERS = _names(
    """
    adadelta adafactor adagrad adam adamax adamw ftrl lion lossscaleoptimizer
    multioptimizer muon nadam rmsprop schedulefreeadamw sgd
    """
)
REGULARIZERS = _names(
    """
    L1 L1L2 L2 OrthogonalRegularizer l1 l1l2 l2 orthogonal_regularizer
    """
)
CONSTRAINTS = _names(
    """
    MaxNorm MinMaxNorm NonNeg UnitNorm max_norm min_max_norm non_neg unit_norm
    """
)

# Functions a configuration may name ({"class_name": "function", "module": ..., "config": name}).
FUNCTIONS: dict[str, frozenset[str]] = {
    "keras.activations": ACTIVATIONS,
    "keras.losses": LOSSES,
    "keras.metrics": METRICS,
    "builtins": ACTIVATIONS | LOSSES | METRICS,
}
