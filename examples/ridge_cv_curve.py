r"""
ridge_cv: the cross-validation curve, λ_min and λ_1se
=====================================================

:func:`l2optim.ridge_cv` scores ridge regression at every λ from one SVD, with
exact leave-one-out (the default), generalised CV or k-fold CV, searches a log grid
and then refines the best point with Brent's method on :math:`\ln\lambda`. It
reports two choices:

* :math:`\lambda_{\min}`, the λ with the lowest CV error;
* :math:`\lambda_{1se}`, the largest λ whose CV error is within one standard error
  of that minimum — the one-standard-error rule, which prefers the simpler (more
  regularised) model the data cannot tell apart from the best.

Data: the diabetes data of Efron, Hastie, Johnstone & Tibshirani (2004), as
distributed by scikit-learn (BSD-3-Clause) and shipped with l2optim, in original
units; ``ridge_cv`` fits an unpenalised intercept, and we standardise the features
so that one λ suits them all.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

import l2optim

X, y, feature_names = l2optim.data.load_diabetes()
X = (X - X.mean(0)) / X.std(0)
result = l2optim.ridge_cv(X, y)
print(
    f"ridge_cv: lambda_min={result.lambda_min:.6g} lambda_1se={result.lambda_1se:.6g} "
    f"n_evaluations={result.n_evaluations} cv={result.cv}"
)
best = np.argmin(result.cv_mean)
print(f"lowest CV mean squared error: {result.cv_mean[best]:.2f} ± {result.cv_se[best]:.2f}")

# %%
# The curve
# ---------
# The band is one standard error either side of the CV mean; the dotted line is
# the one-SE threshold. λ_1se sits where the curve crosses it on the right.
fig, (ax_cv, ax_coef) = plt.subplots(1, 2, figsize=(11, 4))
ax_cv.semilogx(result.lambdas, result.cv_mean, ".-", color="C0", label="leave-one-out MSE")
ax_cv.fill_between(
    result.lambdas, result.cv_mean - result.cv_se, result.cv_mean + result.cv_se, alpha=0.2
)
ax_cv.axhline(result.cv_mean[best] + result.cv_se[best], color="grey", ls=":", label="min + 1 SE")
ax_cv.axvline(result.lambda_min, color="C1", label=f"λ_min = {result.lambda_min:.3g}")
ax_cv.axvline(result.lambda_1se, color="C2", label=f"λ_1se = {result.lambda_1se:.3g}")
ax_cv.set(xlabel="λ", ylabel="CV mean squared error", title="Cross-validation curve")
ax_cv.set_ylim(result.cv_mean.min() * 0.95, result.cv_mean.min() * 1.6)
ax_cv.legend(fontsize=8)

# %%
# The coefficients along the same λ, from the closed form on the centred data:
# :math:`w(\lambda) = (X_c^\top X_c/n + \lambda I)^{-1} X_c^\top y_c/n`.
Xc, yc = X - X.mean(0), y - y.mean()
n = len(y)
path = np.array(
    [
        np.linalg.solve(Xc.T @ Xc / n + lam * np.eye(X.shape[1]), Xc.T @ yc / n)
        for lam in result.lambdas
    ]
)
ax_coef.semilogx(result.lambdas, path)
for lam, colour in ((result.lambda_min, "C1"), (result.lambda_1se, "C2")):
    ax_coef.axvline(lam, color=colour)
ax_coef.set(xlabel="λ", ylabel="coefficient (per standard deviation)", title="Ridge path")
fig.tight_layout()
plt.show()
