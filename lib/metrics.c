/*
 * metrics.c -- the statistics of unlearning evaluations (see metrics.h).
 *
 * Each part follows the reference implementation step by step, in the same
 * order of floating-point operations wherever that order is known, so that
 * most results agree with Python to the last bit; the comments say where
 * they cannot (BLAS matrix products, scipy's double-double sums).
 */
#include "metrics.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

/* ------------------------------------------------------------------------ */
/* numpy's summation                                                         */
/* ------------------------------------------------------------------------ */

/* np.sum adds pairwise (blocks of 8 lanes, halves above 128 elements), but
 * its iterator hands the loop at most 8192 elements at a time and adds those
 * partial sums in order.  Matching it gives sklearn's and scipy's exact bits.
 * The terms come from a callback so no caller has to build an array. */
typedef double (*sum_term)(const void *ctx, size_t i);

static double pairwise_sum(sum_term f, const void *ctx, size_t i0, size_t n) {
  if (n < 8) {
    double res = 0.;
    for (size_t i = 0; i < n; i++) res += f(ctx, i0 + i);
    return res;
  }
  if (n <= 128) {
    double r[8];
    size_t i;
    for (i = 0; i < 8; i++) r[i] = f(ctx, i0 + i);
    for (; i < n - n % 8; i += 8)
      for (size_t k = 0; k < 8; k++) r[k] += f(ctx, i0 + i + k);
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) res += f(ctx, i0 + i);
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(f, ctx, i0, n2) + pairwise_sum(f, ctx, i0 + n2, n - n2);
}

static double numpy_sum(sum_term f, const void *ctx, size_t n) {
  double s = 0.;
  for (size_t i = 0; i < n; i += 8192) s += pairwise_sum(f, ctx, i, n - i < 8192 ? n - i : 8192);
  return s;
}

static double term_array(const void *ctx, size_t i) { return ((const double *)ctx)[i]; }

static double clip01(double p) { return p < 0 ? 0 : p > 1 ? 1 : p; }

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

/* ------------------------------------------------------------------------ */
/* Kolmogorov-Smirnov: the one-sample distribution for the asymptotic path  */
/* ------------------------------------------------------------------------ */

/* scipy.special.smirnov(n, x) = Pr(D+_n >= x), Birnbaum and Tingey's sum
 *   x * sum_{v=0}^{n-floor(nx)-1} C(n,v) (x+v/n)^(v-1) (1-x-v/n)^(n-v).
 * scipy evaluates it in double-double arithmetic; here every term is the
 * exp of its logarithm in long double (so nothing overflows for large n) and
 * the terms, all positive, add in long double: the result agrees with
 * scipy's to about 1e-15 relative, not bit for bit.  The special cases and
 * the early stop are scipy's. */
#define CEPHES_MINLOG (-7.451332191019412076235E2) /* log(2**-1075) */

static double smirnov_sf(long n, double x) {
  if (!(n > 0 && x >= 0.0 && x <= 1.0)) return NAN;
  if (n == 1) return 1 - x;
  if (x == 0.0) return 1.0;
  if (x == 1.0) return 0.0;
  /* floor(n x) and its remainder exactly: n x = nx + lo */
  double nx = (double)n * x, lo = fma((double)n, x, -nx);
  double fl = floor(nx);
  long nxfl = (long)fl;
  double alpha = (nx - fl) + lo;
  if (alpha < 0) {
    nxfl -= 1;
    alpha += 1;
  }
  if (alpha >= 1) {
    nxfl += 1;
    alpha = 0;
  }
  long double ldn = (long double)n, ldnx = (long double)nx + lo;
  if (nxfl == 0 || (nxfl == 1 && alpha == 0)) {
    long double cdf = x * powl(1.0L + x, (long double)(n - 1));
    return clip01((double)(1.0L - cdf));
  }
  if (-2 * n * x * x < CEPHES_MINLOG) return 0.0;
  if (nxfl >= n - 1) return clip01((double)powl(1.0L - x, (long double)n));
  if (n > 1000000) { /* scipy's approximation beyond SMIRNOV_MAX_COMPUTE_N */
    double logp = -pow(6 * n * x + 1.0, 2) / 18.0 / n;
    return clip01(exp(logp));
  }
  long nterms = n - nxfl;
  long double sum = 0, logc = 0;
  for (long v = 0; v < nterms; v++) {
    if (v > 0) logc += logl((ldn - v + 1) / v);
    long double a = (v + ldnx) / ldn, b = ((ldn - v) - ldnx) / ldn; /* x + v/n, 1 - x - v/n */
    long double term = expl(logc + (v - 1) * logl(a) + (n - v) * logl(b));
    sum += term;
    if (term != 0) {
      if (4.0L * (nterms - v) * term < DBL_EPSILON * sum && v != nterms - 1) break;
    } else if (v > n / 2) {
      break;
    }
  }
  return clip01((double)(x * sum));
}

/* log(n!/n^n) by Stirling's series (scipy's _log_nfactorial_div_n_pow_n). */
static double log_nfactorial_div_n_pow_n(long n) {
  static const double c[8] = {-2.955065359477124183e-2, 6.4102564102564102564e-3, -1.9175269175269175269e-3,
                              8.4175084175084175084e-4, -5.952380952380952381e-4, 7.9365079365079365079e-4,
                              -2.7777777777777777778e-3, 8.3333333333333333333e-2};
  double rn = 1.0 / n, x = rn / n, p = c[0];
  for (int i = 1; i < 8; i++) p = p * x + c[i];
  return log((double)n) / 2 - n + log(2 * M_PI) / 2 + rn * p;
}

static void matmul_sq(double *out, const double *a, const double *b, int m) {
  for (int i = 0; i < m; i++)
    for (int j = 0; j < m; j++) {
      double s = 0;
      for (int k = 0; k < m; k++) s += a[i * m + k] * b[k * m + j];
      out[i * m + j] = s;
    }
}

/* Pr(D_n <= d) by Durbin's matrix, as Marsaglia, Tsang and Wang compute it
 * (scipy's _kolmogn_DMTW).  numpy multiplies the matrices with BLAS, whose
 * order of additions is its own: agreement is to rounding, not to the bit.
 * NAN when out of memory. */
static double kolmogn_dmtw_cdf(long n, double d) {
  const double ep128 = ldexp(1.0, 128), em128 = ldexp(1.0, -128);
  if (d >= 1.0) return 1.0;
  double nd = n * d;
  if (nd <= 0.5) return 0.0;
  int k = (int)ceil(nd), m = 2 * k - 1;
  double h = k - nd;
  double *buf = calloc((size_t)3 * m * m + 2 * (size_t)m, sizeof *buf);
  if (!buf) return NAN;
  double *H = buf, *P = H + m * m, *T = P + m * m, *v = T + m * m, *w = v + m;
  double fac = 1.0;
  for (int j = 1; j <= m; j++) {
    v[j - 1] = 1.0 - pow(h, j);
    w[j - 1] = fac;
    fac /= j;
    v[j - 1] *= fac;
  }
  double tt = pow(fmax(2 * h - 1.0, 0), m) - 2 * pow(h, m);
  v[m - 1] = (1.0 + tt) * fac;
  for (int i = 1; i < m; i++)
    for (int r = i - 1; r < m; r++) H[r * m + i] = w[r - (i - 1)];
  for (int r = 0; r < m; r++) H[r * m] = v[r];
  for (int c = 0; c < m; c++) H[(m - 1) * m + c] = v[m - 1 - c];
  for (int i = 0; i < m; i++) P[i * m + i] = 1.0;
  long nn = n, expnt = 0, hexpnt = 0;
  while (nn > 0) {
    if (nn % 2) {
      matmul_sq(T, P, H, m);
      memcpy(P, T, (size_t)m * m * sizeof *P);
      expnt += hexpnt;
    }
    matmul_sq(T, H, H, m);
    memcpy(H, T, (size_t)m * m * sizeof *H);
    hexpnt *= 2;
    if (fabs(H[(k - 1) * m + k - 1]) > ep128) {
      for (int i = 0; i < m * m; i++) H[i] /= ep128;
      hexpnt += 128;
    }
    nn /= 2;
  }
  double p = P[(k - 1) * m + k - 1];
  free(buf);
  for (long i = 1; i <= n; i++) {
    p = i * p / n;
    if (fabs(p) < em128) {
      p *= ep128;
      expnt -= 128;
    }
  }
  if (expnt != 0) p = ldexp(p, (int)expnt);
  return clip01(p);
}

/* The ends of row i's nonzero interval in Pomeranz's recursion. */
static void pomeranz_j1j2(long i, long n, long ll, long ceilf, long roundf, long *j1, long *j2) {
  long a, b;
  if (i == 0) {
    a = -ll - ceilf - 1;
    b = ll + ceilf - 1;
  } else {
    long half = (i + 1) / 2, odd = (i + 1) % 2;
    if (odd == 0) { /* i is odd */
      if (half == n + 1) {
        a = n - ll - ceilf - 1;
        b = n + ll + ceilf - 1;
      } else {
        a = half - 1 - ll - roundf - 1;
        b = half + ll - 1 + ceilf - 1;
      }
    } else {
      a = half - 1 - ll - 1;
      b = half + ll + roundf - 1;
    }
  }
  *j1 = a + 2 > 0 ? a + 2 : 0;
  *j2 = b < n ? b : n;
}

/* Pr(D_n <= x) by Pomeranz's recursion (scipy's _kolmogn_Pomeranz).  The
 * convolutions add in their own order: agreement is to rounding.  NAN when
 * out of memory. */
static double kolmogn_pomeranz_cdf(long n, double x) {
  const double ep128 = ldexp(1.0, 128), em128 = ldexp(1.0, -128);
  double t = n * x;
  long ll = (long)floor(t);
  double f = t - ll, g = fmin(f, 1.0 - f);
  long ceilf = f > 0, roundf = f > 0.5;
  long npwrs = 2 * (ll + 1);
  double *buf = calloc((size_t)npwrs * 5, sizeof *buf);
  if (!buf) return NAN;
  double *gp = buf, *g2p = gp + npwrs, *g12p = g2p + npwrs, *V0 = g12p + npwrs, *V1 = V0 + npwrs;
  gp[0] = g2p[0] = g12p[0] = 1.0;
  double gn = g / n, g2n = 2 * g / n, g12n = (1 - 2 * g) / n;
  for (long m = 1; m < npwrs; m++) {
    gp[m] = gp[m - 1] * gn / m;
    g2p[m] = g2p[m - 1] * g2n / m;
    g12p[m] = g12p[m - 1] * g12n / m;
  }
  V1[0] = 1;
  long V0s = 0, V1s = 0, expnt = 0, j1, j2;
  pomeranz_j1j2(0, n, ll, ceilf, roundf, &j1, &j2);
  for (long i = 1; i < 2 * n + 2; i++) {
    long k1 = j1;
    double *tmp = V0;
    V0 = V1;
    V1 = tmp;
    long ts = V0s;
    V0s = V1s;
    V1s = ts;
    memset(V1, 0, (size_t)npwrs * sizeof *V1);
    pomeranz_j1j2(i, n, ll, ceilf, roundf, &j1, &j2);
    const double *pw = (i == 1 || i == 2 * n + 1) ? gp : (i % 2 ? g2p : g12p);
    long ln2 = j2 - k1 + 1;
    if (ln2 > 0) {
      /* V1[c] = (V0[k1-V0s ...] * pw)[j1-k1+c], the full convolution's slice */
      long off = k1 - V0s, start = j1 - k1, len = j2 - j1 + 1;
      double mx = 0;
      for (long c = 0; c < len && c < npwrs; c++) {
        long kk = start + c;
        double s = 0;
        for (long a = 0; a <= kk; a++) {
          long b = kk - a;
          if (a >= ln2 || b >= ln2 || off + a < 0 || off + a >= npwrs || b >= npwrs) continue;
          s += V0[off + a] * pw[b];
        }
        V1[c] = s;
        if (s > mx) mx = s;
      }
      if (0 < mx && mx < em128) {
        for (long c = 0; c < npwrs; c++) V1[c] *= ep128;
        expnt -= 128;
      }
      V1s = V0s + j1 - k1;
    }
  }
  double ans = (n - V1s >= 0 && n - V1s < npwrs) ? V1[n - V1s] : 0.0;
  free(buf);
  for (long m = 1; m <= n; m++) {
    if (fabs(ans) > ep128) {
      ans *= em128;
      expnt += 128;
    }
    ans *= m;
  }
  if (expnt != 0) ans = ldexp(ans, (int)expnt);
  return clip01(ans);
}

/* Pr(D_n <= x) by Pelz and Good's approximation (scipy's _kolmogn_PelzGood),
 * in scipy's order of operations. */
static double kolmogn_pelz_good_cdf(long n, double x) {
  if (x <= 0.0) return 0.0;
  if (x >= 1.0) return 1.0;
  const double pi2 = pow(M_PI, 2), pi4 = pow(M_PI, 4), pi6 = pow(M_PI, 6);
  const double sqrt2pi = sqrt(2 * M_PI), sqrt3 = sqrt(3.0);
  double z = sqrt((double)n) * x;
  double z2 = pow(z, 2), z3 = pow(z, 3), z4 = pow(z, 4), z6 = pow(z, 6);
  double qlog = -pi2 / 8 / z2;
  if (qlog < -708) return 0.0;
  double q = exp(qlog);
  double k1a = -z2, k1b = pi2 / 4;
  double k2a = 6 * z6 + 2 * z4, k2b = (2 * z4 - 5 * z2) * pi2 / 4, k2c = pi4 * (1 - 2 * z2) / 16;
  double k3d = pi6 * (5 - 30 * z2) / 64, k3c = pi4 * (-60 * z2 + 212 * z4) / 16;
  double k3b = pi2 * (135 * z4 - 96 * z6) / 4, k3a = -30 * z6 - 90 * pow(z, 8);
  double K[4] = {0, 0, 0, 0};
  long maxk = (long)ceil(16 * z / M_PI);
  for (long k = maxk; k > 0; k--) {
    long m = 2 * k - 1;
    double m2 = (double)(m * m), m4 = (double)(m * m * m * m), m6 = (double)(m * m * m * m * m * m);
    double qp = pow(q, (double)(8 * k));
    double c[4] = {1.0, k1a + k1b * m2, k2a + k2b * m2 + k2c * m4, k3a + k3b * m2 + k3c * m4 + k3d * m6};
    for (int i = 0; i < 4; i++) {
      K[i] *= qp;
      K[i] += c[i];
    }
  }
  double den[4] = {z, 6 * z4, 72 * pow(z, 7), 6480 * pow(z, 10)};
  for (int i = 0; i < 4; i++) {
    K[i] *= q;
    K[i] *= sqrt2pi;
    K[i] /= den[i];
  }
  q = exp(-pi2 / 2 / z2);
  double *e2 = malloc(2 * (size_t)(maxk > 0 ? maxk : 1) * sizeof *e2);
  if (!e2) return NAN;
  double *e3 = e2 + (maxk > 0 ? maxk : 1), sqrt3z = sqrt3 * z;
  for (long i = 0; i < maxk; i++) {
    long k = maxk - i;
    double k2 = (double)(k * k), qk = pow(q, k2), kpi = M_PI * k;
    e2[i] = k2 * qk;
    e3[i] = (sqrt3z + kpi) * (sqrt3z - kpi) * k2 * qk;
  }
  double k2extra = numpy_sum(term_array, e2, (size_t)maxk);
  double k3extra = numpy_sum(term_array, e3, (size_t)maxk);
  free(e2);
  k2extra *= pi2 * sqrt2pi / (-36 * z3);
  K[2] += k2extra;
  k3extra *= pi2 * sqrt2pi / (216 * z6);
  K[3] += k3extra;
  for (int i = 0; i < 4; i++) K[i] /= pow((double)n, i / 2.0);
  return 0.0 + K[0] + K[1] + K[2] + K[3];
}

/* scipy.stats.kstwo.sf(x, n): Pr(D_n >= x) for the two-sided one-sample
 * statistic, choosing among the methods as Simard and L'Ecuyer do (scipy's
 * _kolmogn), after rv_continuous's own checks of the support. */
static double kstwo_sf(long n, double x) {
  if (isnan(x)) return NAN;
  if (x >= 1.0) return 0.0;
  if (x <= 0.5 / n) return 1.0;
  double t = n * x;
  if (t <= 1.0) { /* Ruben-Gambino: 1/2n <= x <= 1/n */
    double prob;
    if (n <= 140) {
      prob = 1.0;
      for (long i = 1; i <= n; i++) prob *= i * (1.0 / n) * (2 * t - 1);
    } else {
      prob = exp(log_nfactorial_div_n_pow_n(n) + n * log(2 * t - 1));
    }
    return clip01(1.0 - prob);
  }
  if (t >= n - 1) return clip01(2 * pow(1.0 - x, (double)n));
  if (x >= 0.5) return clip01(2 * smirnov_sf(n, x));
  double nxsq = t * x, cdf;
  if (n <= 140) {
    if (nxsq <= 0.754693) return clip01(1.0 - kolmogn_dmtw_cdf(n, x));
    if (nxsq <= 4) return clip01(1.0 - kolmogn_pomeranz_cdf(n, x));
    return clip01(2 * smirnov_sf(n, x));
  }
  if (nxsq >= 370.0) return 0.0;
  if (nxsq >= 2.2) return clip01(2 * smirnov_sf(n, x));
  if (nxsq >= 18.0)
    cdf = 1.0;
  else if (n <= 100000 && n * pow(x, 1.5) <= 1.4)
    cdf = kolmogn_dmtw_cdf(n, x);
  else
    cdf = kolmogn_pelz_good_cdf(n, x);
  return clip01(1.0 - clip01(cdf));
}

/* ------------------------------------------------------------------------ */
/* Kolmogorov-Smirnov: the exact two-sample distribution                    */
/* ------------------------------------------------------------------------ */

/* Pr(D_{n,n} >= h/n) (scipy's _compute_prob_outside_square): an alternating
 * sum of binomial ratios, factored Horner-fashion. */
static double ks_outside_square(long n, long h) {
  double P = 0.0;
  for (long k = n / h; k >= 0; k--) {
    double p1 = 1.0;
    for (long j = 0; j < h; j++) p1 = (double)(n - k * h - j) * p1 / (double)(n + k * h + j + 1);
    P = p1 * (1.0 - P);
  }
  return 2 * P;
}

/* Pr(D_{m,n} >= h/lcm(m,n)) by counting lattice paths that stay strictly
 * inside the band (scipy's _compute_outer_prob_inside_method, Hodges with
 * Viehmann's recursion for 1-p).  The column A slides with the band.  NAN
 * when out of memory, or should the band ever outrun the column (scipy
 * would stop with an IndexError there). */
static double ks_outer_inside(long m, long n, long g, long h) {
  if (m < n) {
    long t = m;
    m = n;
    n = t;
  }
  long mg = m / g, ng = n / g;
  long minj = 0, maxj = (long)ceil((double)h / mg);
  if (maxj > n + 1) maxj = n + 1;
  long curlen = maxj - minj;
  long lenA = 2 * maxj + 2 < n + 1 ? 2 * maxj + 2 : n + 1;
  double *A = malloc((size_t)lenA * sizeof *A);
  if (!A) return NAN;
  for (long i = 0; i < lenA; i++) A[i] = i < maxj ? 0.0 : 1.0;
  double result = NAN;
  for (long i = 1; i <= m; i++) {
    long lastminj = minj, lastlen = curlen;
    minj = (long)floor((double)(ng * i - h) / mg) + 1;
    if (minj < 0) minj = 0;
    if (minj > n) minj = n;
    maxj = (long)ceil((double)(ng * i + h) / mg);
    if (maxj > n + 1) maxj = n + 1;
    if (maxj <= minj) {
      result = 1.0;
      goto done;
    }
    if (maxj - lastminj > lenA) goto done;
    double val = minj == 0 ? 0.0 : 1.0;
    for (long jj = 0; jj < maxj - minj; jj++) {
      long j = jj + minj;
      val = (A[jj + minj - lastminj] * (double)i + val * (double)j) / (double)(i + j);
      A[jj] = val;
    }
    curlen = maxj - minj;
    for (long c = curlen; c < curlen + (lastlen - curlen) && c < lenA; c++) A[c] = 1.0;
  }
  result = A[maxj - minj - 1];
done:
  free(A);
  return result;
}

static long gcd_long(long a, long b) {
  while (b) {
    long t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/* scipy's MAX_AUTO_N: "auto" tries the exact distribution up to this size */
#define KS_MAX_EXACT_N 10000

/* ks_2samp's statistic and (when pvalue is not NULL) two-sided p-value.
 * Returns -1 (out of memory, a NaN, an empty sample) with both NAN. */
static int ks_2samp(const double *a, size_t n, const double *b, size_t m, double *stat, double *pvalue) {
  *stat = NAN;
  if (pvalue) *pvalue = NAN;
  if (n == 0 || m == 0) return -1;
  for (size_t i = 0; i < n; i++)
    if (isnan(a[i])) return -1;
  for (size_t i = 0; i < m; i++)
    if (isnan(b[i])) return -1;
  double *sa = malloc((n + m) * sizeof *sa);
  if (!sa) return -1;
  double *sb = sa + n;
  memcpy(sa, a, n * sizeof *sa);
  memcpy(sb, b, m * sizeof *sb);
  qsort(sa, n, sizeof *sa, cmp_double);
  qsort(sb, m, sizeof *sb, cmp_double);
  /* cdf1 - cdf2 at every sample value, cdf = count(<= v) / size */
  double maxs = -INFINITY, mins = INFINITY;
  size_t i = 0, j = 0;
  while (i < n || j < m) {
    double v = (j >= m || (i < n && sa[i] <= sb[j])) ? sa[i] : sb[j];
    while (i < n && sa[i] <= v) i++;
    while (j < m && sb[j] <= v) j++;
    double diff = (double)i / (double)n - (double)j / (double)m;
    if (diff > maxs) maxs = diff;
    if (diff < mins) mins = diff;
  }
  free(sa);
  double minS = clip01(-mins);
  double d = minS > maxs ? minS : maxs;

  /* "auto" tries the exact distribution, with the statistic rounded to the
   * lattice of multiples of 1/lcm(n, m), and reports that rounded statistic */
  int try_exact = (n > m ? n : m) <= KS_MAX_EXACT_N;
  long ln = (long)n, lm = (long)m, g = 1, h = 0;
  if (try_exact) {
    g = gcd_long(ln, lm);
    long lcm = (ln / g) * lm;
    h = (long)rint(d * (double)lcm);
    d = (double)h / (double)lcm;
  }
  *stat = d;
  if (!pvalue) return 0;
  double p = NAN;
  int exact_ok = 0;
  if (try_exact) {
    if (h == 0)
      p = 1.0;
    else if (ln == lm)
      p = ks_outside_square(ln, h);
    else
      p = ks_outer_inside(ln, lm, g, h);
    if (isnan(p)) return -1; /* out of memory */
    /* scipy goes asymptotic when the exact answer is not a probability */
    exact_ok = 0 <= p && p <= 1;
  }
  if (!exact_ok) {
    double big = (double)(n > m ? n : m), small = (double)(n > m ? m : n);
    double en = big * small / (big + small);
    p = kstwo_sf((long)rint(en), d);
  }
  *pvalue = isnan(p) ? p : clip01(p);
  return 0;
}

double ks_2samp_pvalue(const double *a, size_t n, const double *b, size_t m) {
  double d, p;
  ks_2samp(a, n, b, m, &d, &p);
  return p;
}

double ks_2samp_stat(const double *a, size_t n, const double *b, size_t m) {
  double d;
  ks_2samp(a, n, b, m, &d, NULL);
  return d;
}

/* ------------------------------------------------------------------------ */
/* ROC AUC                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct {
  double score;
  int label;
} scored;

static int cmp_scored_desc(const void *x, const void *y) {
  double a = ((const scored *)x)->score, b = ((const scored *)y)->score;
  return (a < b) - (a > b);
}

typedef struct {
  const double *fpr, *tpr;
} roc_curve;

/* np.trapz's terms: dx * (y[i+1] + y[i]) / 2 */
static double trapz_term(const void *ctx, size_t i) {
  const roc_curve *c = ctx;
  return (c->fpr[i + 1] - c->fpr[i]) * (c->tpr[i + 1] + c->tpr[i]) / 2.0;
}

/* sklearn's roc_curve (distinct thresholds, collinear points dropped, (0,0)
 * prepended) and auc (np.trapz), with the same operations in the same order. */
double roc_auc(const double *scores, const int *labels, size_t n) {
  size_t npos = 0, nneg = 0;
  for (size_t i = 0; i < n; i++) {
    if (labels[i] != 0 && labels[i] != 1) return NAN;
    if (!isfinite(scores[i])) return NAN;
    if (labels[i])
      npos++;
    else
      nneg++;
  }
  if (npos == 0 || nneg == 0) return NAN;
  scored *s = malloc(n * sizeof *s);
  size_t *tp = malloc((n + 1) * 2 * sizeof *tp);
  double *rate = malloc((n + 1) * 2 * sizeof *rate);
  if (!s || !tp || !rate) {
    free(s);
    free(tp);
    free(rate);
    return NAN;
  }
  size_t *fp = tp + n + 1;
  for (size_t i = 0; i < n; i++) s[i] = (scored){scores[i], labels[i]};
  qsort(s, n, sizeof *s, cmp_scored_desc);
  /* true and false positives at or above each distinct score, descending */
  size_t k = 0, tps = 0;
  for (size_t i = 0; i < n; i++) {
    tps += (size_t)s[i].label;
    if (i + 1 == n || s[i + 1].score != s[i].score) {
      tp[k] = tps;
      fp[k] = i + 1 - tps;
      k++;
    }
  }
  /* drop_intermediate: keep the ends and every corner (a nonzero second
   * difference of fps or tps; the counts are exact, so integers serve), then
   * prepend (0, 0) and divide by the totals */
  double *fpr = rate, *tpr = rate + k + 1;
  double ftot = (double)fp[k - 1], ttot = (double)tp[k - 1];
  size_t kept = 1;
  fpr[0] = tpr[0] = 0.0;
  for (size_t i = 0; i < k; i++) {
    int keep = k <= 2 || i == 0 || i == k - 1 || fp[i + 1] - fp[i] != fp[i] - fp[i - 1] ||
               tp[i + 1] - tp[i] != tp[i] - tp[i - 1];
    if (!keep) continue;
    fpr[kept] = (double)fp[i] / ftot;
    tpr[kept] = (double)tp[i] / ttot;
    kept++;
  }
  roc_curve c = {fpr, tpr};
  double area = numpy_sum(trapz_term, &c, kept - 1);
  free(s);
  free(tp);
  free(rate);
  return area;
}

/* ------------------------------------------------------------------------ */
/* Harmonic mean                                                             */
/* ------------------------------------------------------------------------ */

static double term_reciprocal(const void *ctx, size_t i) { return 1.0 / ((const double *)ctx)[i]; }

/* 1 / np.mean(1 / x), as scipy.stats.hmean computes it. */
double harmonic_mean(const double *x, size_t n) {
  if (n == 0) return NAN;
  for (size_t i = 0; i < n; i++)
    if (isnan(x[i]) || x[i] < 0) return NAN;
  return 1.0 / (numpy_sum(term_reciprocal, x, n) / (double)n);
}

/* ------------------------------------------------------------------------ */
/* NLTK's Porter stemmer                                                     */
/* ------------------------------------------------------------------------ */

/* The word being stemmed: an unchanged prefix of the input and a short
 * rewritten tail.  Every rule rewrites only the last few letters (at most
 * about 20 in all), so no stem needs the word copied or memory allocated. */
typedef struct {
  const char *base;
  size_t keep;
  char tail[48];
  size_t ntail;
} stem_word;

static char sw_at(const stem_word *w, size_t i) {
  char c = i < w->keep ? w->base[i] : w->tail[i - w->keep];
  return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static size_t sw_len(const stem_word *w) { return w->keep + w->ntail; }

static int sw_ends(const stem_word *w, const char *suffix) {
  size_t n = strlen(suffix), len = sw_len(w);
  if (n > len) return 0;
  for (size_t i = 0; i < n; i++)
    if (sw_at(w, len - n + i) != suffix[i]) return 0;
  return 1;
}

static void sw_cut(stem_word *w, size_t k) {
  if (k <= w->ntail) {
    w->ntail -= k;
  } else {
    w->keep -= k - w->ntail;
    w->ntail = 0;
  }
}

static void sw_append(stem_word *w, const char *s) {
  for (; *s && w->ntail < sizeof w->tail; s++) w->tail[w->ntail++] = *s;
}

static void sw_replace(stem_word *w, size_t cut, const char *with) {
  sw_cut(w, cut);
  sw_append(w, with);
}

static int is_vowel(char c) { return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u'; }

/* Porter's consonant: not a vowel, and a 'y' only when it follows a vowel
 * (or starts the word).  Iterative, as a word of many y's would otherwise
 * recurse once per letter. */
static int is_cons(const stem_word *w, size_t i) {
  char c = sw_at(w, i);
  if (is_vowel(c)) return 0;
  if (c != 'y') return 1;
  size_t s = i;
  while (s > 0 && sw_at(w, s - 1) == 'y') s--;
  int first = s == 0 ? 1 : is_vowel(sw_at(w, s - 1));
  return (i - s) % 2 == 0 ? first : !first;
}

/* m, the number of vowel-consonant transitions in the first len letters */
static size_t measure(const stem_word *w, size_t len) {
  size_t m = 0;
  int prev_vowel = 0, prev_cons = 0;
  for (size_t i = 0; i < len; i++) {
    char c = sw_at(w, i);
    int cons = is_vowel(c) ? 0 : c != 'y' ? 1 : i == 0 ? 1 : !prev_cons;
    if (cons && prev_vowel) m++;
    prev_vowel = !cons;
    prev_cons = cons;
  }
  return m;
}

static int contains_vowel(const stem_word *w, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (!is_cons(w, i)) return 1;
  return 0;
}

static int ends_double_consonant(const stem_word *w, size_t len) {
  return len >= 2 && sw_at(w, len - 1) == sw_at(w, len - 2) && is_cons(w, len - 1);
}

/* *o: the stem ends consonant-vowel-consonant, the last not w, x or y; NLTK
 * also counts a two-letter vowel-consonant stem. */
static int ends_cvc(const stem_word *w, size_t len) {
  if (len >= 3 && is_cons(w, len - 3) && !is_cons(w, len - 2) && is_cons(w, len - 1)) {
    char c = sw_at(w, len - 1);
    if (c != 'w' && c != 'x' && c != 'y') return 1;
  }
  return len == 2 && !is_cons(w, 0) && is_cons(w, 1);
}

enum { COND_NONE, COND_M_GT0, COND_M_GT1, COND_ION, COND_LOGI };

typedef struct {
  const char *suffix, *repl;
  int cond;
} stem_rule;

/* The first rule whose suffix the word ends with decides: if its condition
 * on the rest of the word holds, the suffix is replaced; either way no later
 * rule is tried (NLTK's _apply_rule_list). */
static void apply_rules(stem_word *w, const stem_rule *r, size_t nrules) {
  size_t len = sw_len(w);
  for (size_t i = 0; i < nrules; i++) {
    if (!sw_ends(w, r[i].suffix)) continue;
    size_t slen = strlen(r[i].suffix), stem = len - slen;
    int ok = 0;
    switch (r[i].cond) {
    case COND_NONE: ok = 1; break;
    case COND_M_GT0: ok = measure(w, stem) > 0; break;
    case COND_M_GT1: ok = measure(w, stem) > 1; break;
    case COND_ION: ok = measure(w, stem) > 1 && (sw_at(w, stem - 1) == 's' || sw_at(w, stem - 1) == 't'); break;
    case COND_LOGI: ok = measure(w, len - 3) > 0; break; /* the 'l' stays with the stem */
    }
    if (ok) sw_replace(w, slen, r[i].repl);
    return;
  }
}

static void step1a(stem_word *w) {
  static const stem_rule rules[] = {{"sses", "ss", COND_NONE}, {"ies", "i", COND_NONE}, {"ss", "ss", COND_NONE},
                                    {"s", "", COND_NONE}};
  if (sw_ends(w, "ies") && sw_len(w) == 4) { /* NLTK: 'dies' -> 'die', not 'di' */
    sw_replace(w, 3, "ie");
    return;
  }
  apply_rules(w, rules, sizeof rules / sizeof *rules);
}

static void step1b(stem_word *w) {
  size_t len = sw_len(w);
  if (sw_ends(w, "ied")) { /* NLTK: 'died' -> 'die', 'spied' -> 'spi' */
    sw_replace(w, 3, len == 4 ? "ie" : "i");
    return;
  }
  if (sw_ends(w, "eed")) {
    if (measure(w, len - 3) > 0) sw_cut(w, 1);
    return;
  }
  if (sw_ends(w, "ed") && contains_vowel(w, len - 2))
    sw_cut(w, 2);
  else if (sw_ends(w, "ing") && contains_vowel(w, len - 3))
    sw_cut(w, 3);
  else
    return;
  len = sw_len(w);
  if (sw_ends(w, "at") || sw_ends(w, "bl") || sw_ends(w, "iz")) {
    sw_append(w, "e");
  } else if (ends_double_consonant(w, len)) {
    char c = sw_at(w, len - 1);
    if (c != 'l' && c != 's' && c != 'z') sw_cut(w, 1);
  } else if (measure(w, len) == 1 && ends_cvc(w, len)) {
    sw_append(w, "e");
  }
}

static void step1c(stem_word *w) {
  size_t len = sw_len(w);
  /* NLTK: y -> i after a consonant that is not the whole stem ('happy', not 'enjoy' or 'by') */
  if (sw_ends(w, "y") && len - 1 > 1 && is_cons(w, len - 2)) sw_replace(w, 1, "i");
}

static void step2(stem_word *w) {
  static const stem_rule rules[] = {
    {"ational", "ate", COND_M_GT0}, {"tional", "tion", COND_M_GT0}, {"enci", "ence", COND_M_GT0},
    {"anci", "ance", COND_M_GT0},   {"izer", "ize", COND_M_GT0},    {"bli", "ble", COND_M_GT0},
    {"alli", "al", COND_M_GT0},     {"entli", "ent", COND_M_GT0},   {"eli", "e", COND_M_GT0},
    {"ousli", "ous", COND_M_GT0},   {"ization", "ize", COND_M_GT0}, {"ation", "ate", COND_M_GT0},
    {"ator", "ate", COND_M_GT0},    {"alism", "al", COND_M_GT0},    {"iveness", "ive", COND_M_GT0},
    {"fulness", "ful", COND_M_GT0}, {"ousness", "ous", COND_M_GT0}, {"aliti", "al", COND_M_GT0},
    {"iviti", "ive", COND_M_GT0},   {"biliti", "ble", COND_M_GT0},  {"fulli", "ful", COND_M_GT0},
    {"logi", "log", COND_LOGI},
  };
  /* NLTK applies alli -> al first and, when it fires, step 2 again */
  if (sw_ends(w, "alli") && measure(w, sw_len(w) - 4) > 0) {
    sw_replace(w, 4, "al");
    step2(w);
    return;
  }
  apply_rules(w, rules, sizeof rules / sizeof *rules);
}

static void step3(stem_word *w) {
  static const stem_rule rules[] = {
    {"icate", "ic", COND_M_GT0}, {"ative", "", COND_M_GT0}, {"alize", "al", COND_M_GT0}, {"iciti", "ic", COND_M_GT0},
    {"ical", "ic", COND_M_GT0},  {"ful", "", COND_M_GT0},   {"ness", "", COND_M_GT0},
  };
  apply_rules(w, rules, sizeof rules / sizeof *rules);
}

static void step4(stem_word *w) {
  static const stem_rule rules[] = {
    {"al", "", COND_M_GT1},   {"ance", "", COND_M_GT1}, {"ence", "", COND_M_GT1}, {"er", "", COND_M_GT1},
    {"ic", "", COND_M_GT1},   {"able", "", COND_M_GT1}, {"ible", "", COND_M_GT1}, {"ant", "", COND_M_GT1},
    {"ement", "", COND_M_GT1}, {"ment", "", COND_M_GT1}, {"ent", "", COND_M_GT1}, {"ion", "", COND_ION},
    {"ou", "", COND_M_GT1},   {"ism", "", COND_M_GT1},  {"ate", "", COND_M_GT1},  {"iti", "", COND_M_GT1},
    {"ous", "", COND_M_GT1},  {"ive", "", COND_M_GT1},  {"ize", "", COND_M_GT1},
  };
  apply_rules(w, rules, sizeof rules / sizeof *rules);
}

static void step5(stem_word *w) {
  size_t len = sw_len(w);
  if (sw_ends(w, "e")) { /* both 5a rules, each tried: m > 1, or m = 1 and not *o */
    size_t m = measure(w, len - 1);
    if (m > 1 || (m == 1 && !ends_cvc(w, len - 1))) sw_cut(w, 1);
  }
  len = sw_len(w);
  if (sw_ends(w, "ll") && measure(w, len - 1) > 1) sw_cut(w, 1);
}

/* NLTK's table of irregular forms, looked up with the word as given */
static const char *const porter_irregular[][2] = {
  {"sky", "sky"},         {"skies", "sky"},     {"dying", "die"},       {"lying", "lie"},
  {"tying", "tie"},       {"news", "news"},     {"innings", "inning"},  {"inning", "inning"},
  {"outings", "outing"},  {"outing", "outing"}, {"cannings", "canning"}, {"canning", "canning"},
  {"howe", "howe"},       {"proceed", "proceed"}, {"exceed", "exceed"}, {"succeed", "succeed"},
};

static size_t emit(const char *a, size_t alen, const char *b, size_t blen, char *out, size_t cap) {
  if (cap > 0) {
    size_t k = 0;
    for (size_t i = 0; i < alen && k + 1 < cap; i++, k++) {
      char c = a[i];
      out[k] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    for (size_t i = 0; i < blen && k + 1 < cap; i++, k++) out[k] = b[i];
    out[k] = 0;
  }
  return alen + blen;
}

size_t porter_stem(const char *word, size_t len, char *out, size_t cap) {
  for (size_t i = 0; i < sizeof porter_irregular / sizeof *porter_irregular; i++) {
    const char *f = porter_irregular[i][0];
    if (strlen(f) == len && memcmp(f, word, len) == 0)
      return emit(porter_irregular[i][1], strlen(porter_irregular[i][1]), "", 0, out, cap);
  }
  if (len <= 2) return emit(word, len, "", 0, out, cap);
  stem_word w = {.base = word, .keep = len};
  step1a(&w);
  step1b(&w);
  step1c(&w);
  step2(&w);
  step3(&w);
  step4(&w);
  step5(&w);
  return emit(word, w.keep, w.tail, w.ntail, out, cap);
}

/* ------------------------------------------------------------------------ */
/* ROUGE-L                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct {
  char *arena;    /* stems, each NUL-terminated */
  size_t used;
  size_t *off;    /* token i starts at arena + off[i] */
  uint32_t *id;   /* equal stems, equal ids (filled by intern) */
  size_t n;
} token_list;

/* rouge_score's tokenize(text, PorterStemmer()): lowercase, runs of
 * [a-z0-9], tokens longer than 3 stemmed.  Returns -1 when out of memory. */
static int tokenize(const char *text, token_list *t) {
  size_t bytes = strlen(text);
  memset(t, 0, sizeof *t);
  /* a token's stem is no longer than its letters, which are no more than its
   * bytes, and tokens are separated: bytes + 1 holds every stem and its NUL */
  t->arena = malloc(bytes + 1);
  char *word = malloc(bytes + 1);
  t->off = malloc((bytes / 2 + 1) * sizeof *t->off);
  t->id = malloc((bytes / 2 + 1) * sizeof *t->id);
  if (!t->arena || !word || !t->off || !t->id) {
    free(word);
    return -1;
  }
  size_t wl = 0;
  for (size_t i = 0; i <= bytes; i++) {
    unsigned char c = (unsigned char)text[i]; /* text[bytes] is the NUL: ends the last word */
    char letter = 0;
    int ends_word = 0;
    if (c >= 'a' && c <= 'z')
      letter = (char)c;
    else if (c >= '0' && c <= '9')
      letter = (char)c;
    else if (c >= 'A' && c <= 'Z')
      letter = (char)(c - 'A' + 'a');
    else if (c == 0xE2 && (unsigned char)text[i + 1] == 0x84 && (unsigned char)text[i + 2] == 0xAA) {
      letter = 'k'; /* U+212A KELVIN SIGN lowercases to 'k' */
      i += 2;
    } else if (c == 0xC4 && (unsigned char)text[i + 1] == 0xB0) {
      letter = 'i'; /* U+0130 lowercases to 'i' and U+0307, which ends the word */
      ends_word = 1;
      i += 1;
    }
    if (letter) word[wl++] = letter;
    if (letter && !ends_word) continue;
    if (wl == 0) continue;
    char *dst = t->arena + t->used;
    size_t sl = wl;
    if (wl > 3) {
      sl = porter_stem(word, wl, dst, wl + 1);
      if (sl > wl) sl = wl; /* never: a stem is no longer than its word */
    } else {
      memcpy(dst, word, wl);
      dst[wl] = 0;
    }
    if (sl > 0) {
      t->off[t->n++] = t->used;
      t->used += sl + 1;
    }
    wl = 0;
  }
  free(word);
  return 0;
}

static void token_list_free(token_list *t) {
  free(t->arena);
  free(t->off);
  free(t->id);
}

typedef struct {
  const char *s;
  size_t pos;
} token_ref;

static int cmp_token_ref(const void *x, const void *y) {
  return strcmp(((const token_ref *)x)->s, ((const token_ref *)y)->s);
}

/* Numbers the distinct stems of both lists, so the LCS compares integers. */
static int intern(token_list *a, token_list *b) {
  size_t n = a->n + b->n;
  token_ref *r = malloc((n ? n : 1) * sizeof *r);
  if (!r) return -1;
  for (size_t i = 0; i < a->n; i++) r[i] = (token_ref){a->arena + a->off[i], i};
  for (size_t i = 0; i < b->n; i++) r[a->n + i] = (token_ref){b->arena + b->off[i], a->n + i};
  qsort(r, n, sizeof *r, cmp_token_ref);
  uint32_t id = 0;
  for (size_t i = 0; i < n; i++) {
    if (i > 0 && strcmp(r[i].s, r[i - 1].s) != 0) id++;
    if (r[i].pos < a->n)
      a->id[r[i].pos] = id;
    else
      b->id[r[i].pos - a->n] = id;
  }
  free(r);
  return 0;
}

/* Length of the longest common subsequence, one row of the table at a time. */
static int lcs_length(const uint32_t *x, size_t nx, const uint32_t *y, size_t ny, size_t *out) {
  size_t *row = calloc(ny + 1, sizeof *row);
  if (!row) return -1;
  for (size_t i = 0; i < nx; i++) {
    size_t diag = 0; /* table[i][j], before row i+1 overwrites it */
    for (size_t j = 0; j < ny; j++) {
      size_t up = row[j + 1];
      row[j + 1] = x[i] == y[j] ? diag + 1 : (up > row[j] ? up : row[j]);
      diag = up;
    }
  }
  *out = row[ny];
  free(row);
  return 0;
}

int rouge_l(const char *prediction, const char *reference, rouge_score *out, mpu_err *e) {
  token_list p, r;
  *out = (rouge_score){0, 0, 0};
  int bad = tokenize(prediction, &p);
  bad |= tokenize(reference, &r);
  size_t lcs = 0;
  if (!bad && p.n && r.n) {
    bad = intern(&p, &r);
    /* the shorter sequence spans the row */
    if (!bad)
      bad = p.n < r.n ? lcs_length(r.id, r.n, p.id, p.n, &lcs) : lcs_length(p.id, p.n, r.id, r.n, &lcs);
  }
  if (!bad && p.n && r.n) {
    double precision = (double)lcs / (double)p.n, recall = (double)lcs / (double)r.n;
    out->precision = precision;
    out->recall = recall;
    out->f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;
  }
  token_list_free(&p);
  token_list_free(&r);
  if (bad) return mpu_fail(e, MPU_EUSAGE, "rouge_l: out of memory");
  return 0;
}

/* ------------------------------------------------------------------------ */
/* zlib                                                                      */
/* ------------------------------------------------------------------------ */

/* Python's zlib.compress: deflateInit2(level 6, 15-bit window, memLevel 8),
 * input in chunks of at most 4 GiB, the last one with Z_FINISH.  Only the
 * length is wanted, so the output passes through a small buffer. */
size_t zlib_length(const char *text, size_t len) {
  z_stream s;
  memset(&s, 0, sizeof s);
  if (deflateInit2(&s, 6, Z_DEFLATED, MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) return 0;
  unsigned char buf[16384];
  size_t total = 0;
  const unsigned char *in = (const unsigned char *)text;
  int flush, rc = Z_OK;
  do {
    size_t chunk = len > UINT32_MAX ? UINT32_MAX : len;
    s.next_in = (Bytef *)in;
    s.avail_in = (uInt)chunk;
    in += chunk;
    len -= chunk;
    flush = len == 0 ? Z_FINISH : Z_NO_FLUSH;
    do {
      s.next_out = buf;
      s.avail_out = sizeof buf;
      rc = deflate(&s, flush);
      if (rc == Z_STREAM_ERROR) break;
      total += sizeof buf - s.avail_out;
    } while (s.avail_out == 0);
  } while (flush != Z_FINISH && rc != Z_STREAM_ERROR);
  deflateEnd(&s);
  return rc == Z_STREAM_END ? total : 0;
}
