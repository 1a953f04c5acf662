"""Searchers: from scored paths to a ranking of architectures.

  blockwise.BlockwiseBeam   BossNAS: block by block, keep the best `top_n`
                            prefixes; an enumerable space is then ranked
                            exhaustively from the block tables
  whole.WholeArchs          one-shot methods: every candidate scored as a
                            whole network (GreedyArchs: GreedyNAS's, its
                            search seeded from the candidate pool)
  evolution                 whole-architecture search of large spaces:
                            evolution (SPOS), NSGA-II, random in a band
                            (docs/search.md; python -m bossnax.search_arch)
  budgeted                  the exact best k under a budget and the exact
                            Pareto front over block tables (DP)
  strategies                search.strategy: which of these a run uses
  ranking.Ranking           the result every consumer reads: scores.csv,
                            ranking.json, the best architecture, the best
                            within a budget
"""

from bossnax.searchers.blockwise import BlockwiseBeam
from bossnax.searchers.ranking import Ranking
from bossnax.searchers.whole import GreedyArchs, WholeArchs

__all__ = ['BlockwiseBeam', 'GreedyArchs', 'Ranking', 'WholeArchs']
