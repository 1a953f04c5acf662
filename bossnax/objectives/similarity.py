"""How close a subnet's representation is to the largest network's: DATA's
selection rule (bossnax/objectives/sandwich.py), as pure per-example
functions so tests check them against hand computations.

Global distances compare 128-d projections q (the subnet's query encoder)
and k (the key encoder at the largest network), both L2-normalised:

  cosine    1 - <q, k>
  mse       |q - k|^2  (= 2 - 2 <q, k> for unit vectors: the same ranking
            as cosine; kept because DATA names it)
  relation  ReSSL's relational distance: the cross-entropy of the
            subnet's similarity distribution over a queue of keys against
            the largest network's, softmax(<., queue> / T)

Dense distances compare the spatial self-similarity (Gram) matrices of the
last feature maps, G = n(F) n(F)^T over positions (n: L2 over channels), so
networks of different widths are comparable (for detection-like tasks):

  gram_mse     mean (G_q - G_k)^2
  gram_cosine  1 - cos(vec G_q, vec G_k)
  gram_kl      mean over rows of KL(softmax(G_k / T) || softmax(G_q / T))
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bossnax.objectives.bootstrap import normalize

GLOBAL = ('cosine', 'mse', 'relation')
DENSE = ('gram_mse', 'gram_cosine', 'gram_kl')
DISTANCES = GLOBAL + DENSE


def global_distance(kind: str, q, k, queue=None, temperature: float = 0.2):
  """Per-example distance [B] of projections q, k [B, D] (normalised
  here); `queue` [Q, D] of normalised keys for 'relation'."""
  q, k = normalize(q), normalize(k)
  if kind == 'cosine':
    return 1.0 - (q * k).sum(-1)
  if kind == 'mse':
    return ((q - k) ** 2).sum(-1)
  if kind == 'relation':
    if queue is None:
      raise ValueError("search.similarity='relation' needs a queue of keys")
    queue = queue.astype(jnp.float32)
    p_k = jax.nn.softmax(k @ queue.T / temperature, -1)
    log_p_q = jax.nn.log_softmax(q @ queue.T / temperature, -1)
    return -(p_k * log_p_q).sum(-1)
  raise ValueError(f'search.similarity={kind!r}: use one of '
                   f'{", ".join(DISTANCES)}')


def gram(fmap):
  """[B, HW, HW] cosine self-similarity of a feature map [B, H, W, C]."""
  f = normalize(fmap.reshape(fmap.shape[0], -1, fmap.shape[-1]))
  return jnp.einsum('bic,bjc->bij', f, f)


def dense_distance(kind: str, fq, fk, temperature: float = 0.2):
  """Per-example distance [B] of the Gram matrices of maps fq, fk
  [B, H, W, C] (the channel counts may differ)."""
  gq, gk = gram(fq), gram(fk)
  if kind == 'gram_mse':
    return ((gq - gk) ** 2).mean((1, 2))
  if kind == 'gram_cosine':
    a, b = gq.reshape(gq.shape[0], -1), gk.reshape(gk.shape[0], -1)
    return 1.0 - (normalize(a) * normalize(b)).sum(-1)
  if kind == 'gram_kl':
    log_q = jax.nn.log_softmax(gq / temperature, -1)
    log_k = jax.nn.log_softmax(gk / temperature, -1)
    return (jnp.exp(log_k) * (log_k - log_q)).sum(-1).mean(-1)
  raise ValueError(f'search.similarity={kind!r}: use one of '
                   f'{", ".join(DISTANCES)}')
