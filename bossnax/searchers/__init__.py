"""Searchers: from scored paths to a ranking of architectures.

  blockwise.BlockwiseBeam   BossNAS: block by block, keep the best `top_n`
                            prefixes; an enumerable space is then ranked
                            exhaustively from the block tables
  ranking.Ranking           the result every consumer reads: scores.csv,
                            ranking.json, the best architecture, the best
                            within a budget
"""

from bossnax.searchers.blockwise import BlockwiseBeam
from bossnax.searchers.ranking import Ranking

__all__ = ['BlockwiseBeam', 'Ranking']
