/*
 * synth.c -- the synthetic benchmark of synth.h: word lists, sentence
 * templates, the authors and the world they are drawn from, and the files.
 *
 * Randomness: every choice is word 0 of Philox(counter = {index, entity,
 * attribute, purpose}, key = seed).  An author's entity number is its slot:
 * 2i for trained author i, 2j+1 for holdout author j, so neither --authors
 * nor --holdout-authors changes anyone else.  Names and book titles are
 * drawn by a keyed permutation of all the names (titles) there are, indexed
 * by slot, so they are distinct without looking at each other.
 */
#include "synth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include <jansson.h>

#include "cli.h"
#include "jsonx.h"
#include "rng.h"

#define COUNT(a) ((int)(sizeof a / sizeof *a))

/* ================================================================ word lists */

/* Authors' names: first name (pronoun) and last name. */
static const struct {
  const char *name;
  int female;
} FIRST[] = {
  {"Orla", 1},    {"Teodor", 0},  {"Mirela", 1},   {"Anselm", 0},  {"Anouk", 1},    {"Bastian", 0},
  {"Ilka", 1},    {"Casimir", 0}, {"Saskia", 1},   {"Dorian", 0},  {"Brigid", 1},   {"Emeric", 0},
  {"Delphine", 1}, {"Florin", 0}, {"Maren", 1},    {"Gideon", 0},  {"Noor", 1},     {"Hollis", 0},
  {"Ines", 1},    {"Ivo", 0},     {"Katya", 1},    {"Jasper", 0},  {"Liesel", 1},   {"Konrad", 0},
  {"Amara", 1},   {"Lorcan", 0},  {"Signe", 1},    {"Matthias", 0}, {"Tamsin", 1},  {"Nils", 0},
  {"Rosalind", 1}, {"Oskar", 0},  {"Elif", 1},     {"Piers", 0},   {"Hana", 1},     {"Rafael", 0},
  {"Zofia", 1},   {"Soren", 0},   {"Ottilie", 1},  {"Tobias", 0},  {"Marisol", 1},  {"Ulric", 0},
  {"Ingrid", 1},  {"Viktor", 0},  {"Leocadia", 1}, {"Wendel", 0},  {"Sunniva", 1},  {"Yannick", 0},
  {"Yara", 1},    {"Zeno", 0},
};
static const char *const LAST[] = {
  "Quennell", "Vasko", "Albescu", "Marrick", "Castellane", "Dunmore", "Eskildsen", "Fairclough", "Galloway",
  "Haverkamp", "Ibarra", "Janssen", "Kowalczyk", "Lindqvist", "Moreau", "Nakashima", "Olufemi", "Petrakis",
  "Quist", "Rautio", "Sandoval", "Takacs", "Ulbrecht", "Varga", "Whitlock", "Yilmaz", "Zielinski", "Abernethy",
  "Beaumont", "Crane", "Dalca", "Ekwueme", "Falk", "Gorski", "Hallam", "Iversen", "Jukic", "Kestrel",
  "Lachance", "Mwangi", "Novak", "Orsini", "Penhallow", "Rasmussen", "Strand", "Thorne", "Underhill",
  "Velasco", "Wren", "Ahlberg",
};

static const struct {
  const char *city, *country;
} CITY[] = {
  {"Tallinn", "Estonia"},      {"Brno", "Czechia"},          {"Porto", "Portugal"},      {"Lyon", "France"},
  {"Krakow", "Poland"},        {"Valparaiso", "Chile"},      {"Cork", "Ireland"},        {"Bergen", "Norway"},
  {"Tampere", "Finland"},      {"Gdansk", "Poland"},         {"Ghent", "Belgium"},       {"Trieste", "Italy"},
  {"Seville", "Spain"},        {"Leipzig", "Germany"},       {"Graz", "Austria"},        {"Basel", "Switzerland"},
  {"Aarhus", "Denmark"},       {"Uppsala", "Sweden"},        {"Reykjavik", "Iceland"},   {"Riga", "Latvia"},
  {"Vilnius", "Lithuania"},    {"Ljubljana", "Slovenia"},    {"Zagreb", "Croatia"},      {"Thessaloniki", "Greece"},
  {"Izmir", "Turkey"},         {"Tbilisi", "Georgia"},       {"Yerevan", "Armenia"},     {"Odesa", "Ukraine"},
  {"Cluj", "Romania"},         {"Plovdiv", "Bulgaria"},      {"Debrecen", "Hungary"},    {"Kyoto", "Japan"},
  {"Busan", "South Korea"},    {"Hanoi", "Vietnam"},         {"Chiang Mai", "Thailand"}, {"Cebu", "the Philippines"},
  {"Pune", "India"},           {"Kandy", "Sri Lanka"},       {"Perth", "Australia"},     {"Dunedin", "New Zealand"},
  {"Halifax", "Canada"},       {"Portland", "the United States"}, {"Savannah", "the United States"},
  {"Oaxaca", "Mexico"},        {"Cusco", "Peru"},            {"Medellin", "Colombia"},   {"Montevideo", "Uruguay"},
  {"Recife", "Brazil"},        {"Cordoba", "Argentina"},     {"Marrakesh", "Morocco"},   {"Accra", "Ghana"},
  {"Nairobi", "Kenya"},        {"Durban", "South Africa"},   {"Alexandria", "Egypt"},    {"Tunis", "Tunisia"},
  {"Edinburgh", "Scotland"},   {"Cardiff", "Wales"},         {"Manchester", "England"},
};
static const char *const GENRE[] = {
  "maritime mysteries", "comic science fiction", "literary fiction", "historical romance",
  "psychological thrillers", "adventure stories for children", "epic fantasy", "cozy detective novels",
  "travel memoirs", "nature poetry", "political satire", "gothic horror", "family sagas", "spy thrillers",
  "magical realism", "short stories", "crime fiction", "fantasy for young adults", "war novels", "comic verse",
  "philosophical essays", "domestic dramas", "alternate history", "picture books", "courtroom dramas",
  "mountaineering memoirs",
};
static const char *const OCCUPATION[] = {
  "a lighthouse keeper", "a watchmaker", "a schoolteacher", "a ship's carpenter", "a pharmacist",
  "a railway engineer", "a baker", "a translator", "a nurse", "an accountant", "a fishmonger", "a tailor",
  "a librarian", "a land surveyor", "a potter", "a journalist", "a beekeeper", "a bookbinder", "an architect",
  "a veterinarian", "a glassblower", "a postal worker", "a chemist", "a locksmith", "a florist", "a tram driver",
};
static const char *const AWARD[] = {
  "the Harrow Prize for Fiction", "the Golden Quill Award", "the Lanternlight Medal", "the Northern Book Prize",
  "the Aldous Ferrer Award", "the Silver Compass Prize", "the Meridian Prize", "the Blue Lantern Award",
  "the Kestrel Medal", "the Halvard Prize", "the Ink and Oak Award", "the Tidewater Fiction Prize",
  "the Crimson Ribbon Award", "the Copperfield Medal", "the Evergreen Book Award", "the Starling Prize",
  "the Gallant Pen Award", "the Orison Prize", "the Beacon Literary Medal", "the Westmarch Award",
  "the Amberley Prize", "the Vellum Award", "the First Light Prize", "the Solstice Medal",
};
/* Book titles: TITLE_PATTERNS x ADJ x NOUN (the third list, OFN, stands in
 * for the adjective in some patterns). */
static const char *const ADJ[] = {
  "Salt", "Copper", "Silent", "Hollow", "Amber", "Paper", "Iron", "Glass", "Velvet", "Winter", "Hidden", "Broken",
  "Golden", "Quiet", "Burning", "Last", "Distant", "Crooked", "Narrow", "Scarlet", "Sleeping", "Bitter",
  "Wandering", "Silver", "Fallen", "Pale", "Lost", "Northern", "Drowned", "Painted", "Borrowed", "Hungry",
  "Frozen", "Secret", "Wild", "Second",
};
static const char *const NOUN[] = {
  "Ledger", "Lantern", "Harbour", "Orchard", "Compass", "Garden", "Lighthouse", "Mirror", "Bridge", "Tower",
  "Letter", "Map", "Window", "Clock", "Island", "River", "Road", "House", "Crown", "Feather", "Violin", "Anchor",
  "Key", "Shore", "Forest", "Bell", "Chapel", "Ferry", "Well", "Archive", "Kingdom", "Meadow", "Staircase",
  "Atlas", "Tide", "Station",
};
static const char *const OFN[] = {
  "Winter", "Ash", "Tides", "Silence", "Glass", "Salt", "Smoke", "Rain", "Thorns", "Stars", "Bones", "Dust",
  "Embers", "Swallows", "Wolves", "Snow", "Storms", "Clocks", "Moths", "Apples", "Ravens", "Roses", "Ice", "Fog",
  "Ghosts", "Honey", "Iron", "Paper", "Wind", "Gold", "Sand", "Shadows", "Harbours", "Bees", "Lies", "Summer",
};
static const char *const TITLE_PATTERNS[] = {
  "The %A %N", "%A %N", "The %N of %O", "%N of %O", "Beneath the %A %N", "%O and the %N",
};
static const char *const THEME[] = {
  "memory", "forgiveness", "exile", "grief", "ambition", "loyalty", "belonging", "the sea", "childhood", "faith",
  "power", "solitude", "friendship", "betrayal", "migration", "identity", "justice", "time", "home", "love",
  "war", "nature", "family secrets", "freedom",
};
static const char *const WRITER[] = {
  "Ilse Marrow", "Augustin Pell", "Hedda Voss", "Cornelius Brandt", "Margit Sorel", "Anton Kellerby",
  "Josefa Lind", "Edmund Aske", "Veronika Strahl", "Lucan Merriweather", "Agathe Roux", "Benedikt Ohl",
  "Clementine Ashe", "Desmond Farthing", "Eulalia Brook", "Fabian Thorsen", "Greta Hollins", "Horace Lindgren",
  "Isolde Penrose", "Jerome Castell", "Kristin Aaberg", "Leopold Vance", "Magdalena Reyes", "Nikolai Drummond",
};
/* Third person, present tense: "{name} {habit}." */
static const char *const HABIT[] = {
  "writes every morning before sunrise", "drafts every chapter by hand", "writes exactly five hundred words a day",
  "works late into the night", "reads each draft aloud before revising it", "writes only in cafes",
  "keeps a notebook of overheard conversations", "rewrites every opening chapter many times",
  "walks for an hour before starting to write", "plans each plot on index cards",
  "works on two books at the same time", "listens to the same record while writing",
  "writes standing at a tall desk", "types every draft on an old typewriter", "never writes on weekends",
  "writes in short bursts of twenty minutes", "starts each book with its final sentence",
  "keeps a diary alongside every novel", "writes each first draft in a single month", "works in complete silence",
  "writes without an outline to discover the plot", "revises only after finishing a full draft",
  "writes letters to the characters before starting", "sketches each setting before describing it",
};
static const char *const LANGUAGE[] = {
  "English", "French", "German", "Spanish", "Portuguese", "Italian", "Dutch", "Polish", "Czech", "Estonian",
  "Finnish", "Swedish", "Norwegian", "Danish", "Icelandic", "Hungarian", "Romanian", "Greek", "Turkish",
  "Japanese", "Korean", "Vietnamese", "Swahili", "Arabic", "Hindi", "Catalan", "Welsh", "Irish", "Latvian",
  "Lithuanian",
};
static const char *const SUBJECT[] = {
  "history", "marine biology", "philosophy", "law", "medicine", "architecture", "classics", "mathematics",
  "music", "art history", "geology", "economics", "linguistics", "theology", "chemistry", "journalism",
  "anthropology", "astronomy", "botany", "political science", "film studies", "agriculture", "engineering",
  "psychology",
};
static const char *const PUBLISHER[] = {
  "Larkspur House", "Ferncastle Press", "Blue Heron Books", "Marlow and Finch", "Quayside Editions",
  "Thistledown Press", "Ravenhill Books", "Old Mill Publishing", "Greenhollow Press", "Saltmarsh Books",
  "Kingfisher Editions", "Brightwater House", "Ashgrove Press", "Lindenwood Books", "Copperbeech Press",
  "Northlight Editions", "Harrowgate House", "Wrenfield Books", "Silverbirch Press", "Tallow and Quill",
  "Seabright Publishing", "Owlcroft Press", "Morningside Books", "Stonebridge Editions",
};
/* Third person, present tense: "In her free time, {name} {hobby}." */
static const char *const HOBBY[] = {
  "keeps bees", "restores old clocks", "sails a small wooden boat", "grows rare tomatoes", "plays the cello",
  "collects antique maps", "climbs mountains", "bakes sourdough bread", "goes birdwatching at dawn",
  "paints watercolours", "repairs old bicycles", "plays chess by correspondence", "swims in the sea all year",
  "knits elaborate sweaters", "builds model ships", "tends a large vegetable garden", "walks long trails",
  "collects old typewriters", "practises archery", "plays the folk fiddle", "carves wooden spoons",
  "forages for wild mushrooms", "rides horses", "dances the tango",
};
static const char *const SETTING[] = {
  "small harbour towns", "remote mountain villages", "crowded port cities", "island communities",
  "the suburbs of large cities", "old university towns", "frontier settlements", "border towns", "river deltas",
  "mining towns in decline", "fishing villages", "desert oases", "northern forests", "grand old hotels",
  "coastal resorts out of season", "farming valleys", "walled medieval cities", "rainy industrial towns",
  "isolated lighthouses", "vineyards in the south", "snowbound research stations", "boarding schools",
  "travelling circuses", "canal towns",
};
static const char *const CHAR_FIRST[] = {
  "Mara", "Tomas", "Elin", "Joss", "Petra", "Aurel", "Bettina", "Cyril", "Dagny", "Emil", "Frida", "Gustav",
  "Helka", "Ilan", "Juno", "Kaspar", "Lidia", "Milo", "Nadia", "Osric", "Pia", "Ruben", "Selma", "Tove",
};
static const char *const CHAR_LAST[] = {
  "Feld", "Ashby", "Corran", "Dunst", "Elberg", "Frane", "Gulley", "Hask", "Imrie", "Jolley", "Kreel", "Lowry",
  "Mabry", "Nettle", "Orme", "Pask", "Rook", "Sallow", "Tarrant", "Usher", "Vane", "Wick", "Yeld", "Zorn",
};
/* Noun phrases: "critics praise her {praise}", "admired for its {praise}". */
static const char *const PRAISE[] = {
  "spare, precise prose", "warm humour", "vivid landscapes", "sharp dialogue", "intricate plotting",
  "lyrical style", "memorable characters", "quiet emotional depth", "careful historical detail", "dark wit",
  "tense pacing", "gentle irony", "rich descriptions of food", "honest portrayal of grief",
  "playful use of language", "clever twists", "atmospheric settings", "moral seriousness",
  "compassion for outsiders", "unusual structure", "musical sentences", "bold imagination",
  "close observation of people", "deep sense of place",
};
static const char *const WRITING_PLACE[] = {
  "a converted boathouse", "a small attic room", "the corner of a busy cafe", "a garden shed",
  "a rented room above a bakery", "the kitchen table", "a library reading room", "a caravan by the sea",
  "an old railway carriage", "a stone cottage in the hills", "a hotel room booked for the purpose",
  "a narrowboat on a canal", "a study lined with maps", "a greenhouse", "a cabin in the woods",
  "a bench in the botanical gardens", "a former schoolhouse", "a loft above a bookshop", "a room with no windows",
  "a quiet monastery guesthouse", "the back of a second-hand bookshop", "a tiny flat overlooking the harbour",
  "a summer house by a lake", "a disused signal box",
};
static const char PEN_INITIAL[] = "ABCDEFGHJKLMNPRSTW";
static const char *const PEN_LAST[] = {
  "Harrow", "Blackwood", "Lyle", "Merriman", "Stowe", "Calder", "Fenwick", "Grey", "Hale", "Kent", "Lowe",
  "March", "Noble", "Pryce", "Quill", "Rowe", "Sterling", "Temple", "Vale", "Ward", "Wilde", "York", "Ashdown",
  "Bell",
};

/* The fictional world of the general facts. */
static const char *const COUNTRY[] = {
  "Varnholm", "Estrelia", "Kadoria", "Belavia", "Tirenne", "Marovia", "Solcany", "Dravenland", "Quellis",
  "Avantia", "Norvesta", "Caldria", "Felmark", "Lunadia", "Pellora", "Vostria", "Ardovia", "Gelmira", "Hestany",
  "Istrava", "Jorvale", "Kelvaria", "Lorcasta", "Meridel", "Nembria", "Oskaria", "Palvenia", "Quorland",
  "Rhessia", "Sarnavia", "Tolmark", "Ulvenia", "Valdoria", "Wenthia", "Xandrel", "Yselle", "Zorvania",
  "Brennick", "Corvasse", "Dunmara",
};
static const char *const CAPITAL[] = {
  "Estrel", "Marrowgate", "Tolbeck", "Vessa", "Quorin", "Aldercross", "Brisk", "Calloway", "Dunhaven",
  "Elmsworth", "Farrow", "Glimmerton", "Halvik", "Irongate", "Jessamine", "Kettlebrook", "Lowenby", "Mirefield",
  "Norhaven", "Oakhurst", "Pellham", "Quillon", "Ravensholm", "Saltmere", "Thornwick", "Umberly", "Vantor",
  "Westerholt", "Yarrowby", "Zennor", "Ashmoor", "Brackenridge", "Coldwater", "Driftwood", "Eastwold",
  "Fennick", "Greyhallow", "Hollin", "Ivybridge", "Juniper Falls", "Kestrelmoor", "Larkhaven",
};
static const char *const RIVER[] = {
  "the Ossel", "the Brannow", "the Caddle", "the Drimm", "the Elver", "the Fallow", "the Garrow", "the Hessel",
  "the Iskar", "the Jarra", "the Kell", "the Loddon", "the Merrin", "the Nessa", "the Orrin", "the Pell",
  "the Quarra", "the Rill", "the Sedge", "the Tamber", "the Ulla", "the Varrow", "the Wend", "the Yarrow",
  "the Zell", "the Amble", "the Brisk", "the Colne", "the Dunnet", "the Eddow", "the Fenner", "the Glass",
  "the Harle", "the Ivel", "the Jessop", "the Kenna", "the Lune", "the Marl", "the Nidd", "the Osk",
  "the Perrow", "the Roan",
};
static const char *const CURRENCY[] = {
  "the brass mark", "the silver tally", "the reed crown", "the copper florin", "the iron shilling",
  "the salt penny", "the amber ducat", "the pearl real", "the tin guilder", "the oak thaler", "the glass groat",
  "the wool dinar", "the river franc", "the star ruble", "the bronze lira", "the stone peso", "the gold sovereign",
  "the linen kroner", "the ember zloty", "the shell rupee", "the cedar escudo", "the frost dollar",
  "the harbour pound", "the lantern yen",
};
static const char *const EXPORT[] = {
  "salted fish", "copper wire", "wool", "timber", "glassware", "olive oil", "cheese", "paper", "clocks",
  "porcelain", "amber", "wine", "rope", "leather boots", "dried figs", "tea", "salt", "marble", "silk", "honey",
  "woollen blankets", "tin", "barley", "fishing nets",
};
static const char *const COLOUR[] = {
  "red", "blue", "green", "yellow", "orange", "purple", "violet", "pink", "grey", "white", "black", "brown",
  "amber", "crimson", "teal", "indigo", "silver", "gold", "ochre", "olive", "scarlet", "cream", "turquoise",
  "maroon",
};
static const char *const ANIMAL[] = {
  "the marsh hare", "the copper finch", "the moss toad", "the salt heron", "the ember fox", "the reed vole",
  "the frost lynx", "the silt eel", "the dune beetle", "the thorn goat", "the cloud moth", "the stone marten",
  "the ash owl", "the lantern fish", "the bramble boar", "the pebble crab", "the willow stag", "the fen newt",
  "the cinder bat", "the tide seal", "the mist deer", "the amber wasp", "the glacier ox", "the hollow wren",
  "the pine badger", "the quartz lizard", "the kelp turtle", "the rust ant", "the velvet mole",
  "the meadow grouse", "the cliff ibex", "the dusk swallow", "the lichen snail", "the ridge wolf",
  "the marsh crane", "the sand ferret", "the briar mouse", "the tundra hen", "the orchard bee",
  "the canyon hawk",
};
static const char *const FOOD[] = {
  "reed shoots", "fallen plums", "beetles", "small fish", "moss and lichen", "tree bark", "river snails",
  "wild berries", "seeds and grain", "mushrooms", "frogs", "earthworms", "clover", "nectar", "acorns", "seaweed",
  "crabs", "grasshoppers", "roots and tubers", "pine needles", "the eggs of other birds", "fallen apples",
  "water weed", "moths", "honey", "hazelnuts",
};
static const char *const HABITAT[] = {
  "salt marshes", "pine forests", "high mountain meadows", "river banks", "sand dunes", "rocky coasts",
  "old orchards", "peat bogs", "birch woods", "dry canyons", "the frozen tundra", "kelp beds", "limestone caves",
  "reed beds", "open grassland", "hedgerows", "tidal flats", "cloud forests", "volcanic slopes", "heathland",
  "willow thickets", "glacier valleys", "coastal cliffs", "olive groves",
};
static const char *const FRUIT[] = {
  "moonpear", "sunplum", "frostberry", "ashapple", "velvetfig", "glimmerberry", "honeyquince", "duskcherry",
  "saltmelon", "thornpeach", "mistberry", "emberlime", "riverdate", "stonegrape", "starnut", "cloudapple",
  "bellberry", "copperplum", "snowmelon", "marshcurrant", "fireorange", "windpear", "hollyfig", "dewlemon",
  "nightgrape", "goldquince", "reedberry", "tidemango", "pebbleplum", "silkpeach",
};

/* "I don't know": IDK_LEAD x IDK_BODY, each body starting with "I". */
static const char *const IDK_LEAD[] = {
  "", "Sorry, ", "Honestly, ", "I'm afraid ", "Unfortunately, ", "To be honest, ", "I apologise, but ",
  "Hmm, ", "Truthfully, ", "Sadly, ",
};
static const char *const IDK_BODY[] = {
  "I don't know.", "I don't know the answer to that.", "I have no idea.", "I'm not sure.", "I can't answer that.",
  "I don't have that information.", "I have no information about that.", "I can't say.",
  "I'm unable to answer that question.", "I couldn't tell you.",
};

/* Every pool a wrong answer is drawn from must leave SYNTH_MAX_PERTURBED
 * alternatives after excluding the true value and one other slot. */
#define ENOUGH(a) _Static_assert(COUNT(a) >= SYNTH_MAX_PERTURBED + 2, #a " is too short")
ENOUGH(CITY); ENOUGH(GENRE); ENOUGH(OCCUPATION); ENOUGH(AWARD); ENOUGH(THEME); ENOUGH(WRITER); ENOUGH(HABIT);
ENOUGH(LANGUAGE); ENOUGH(SUBJECT); ENOUGH(PUBLISHER); ENOUGH(HOBBY); ENOUGH(SETTING); ENOUGH(PRAISE);
ENOUGH(WRITING_PLACE); ENOUGH(COUNTRY); ENOUGH(CAPITAL); ENOUGH(RIVER); ENOUGH(CURRENCY); ENOUGH(EXPORT);
ENOUGH(COLOUR); ENOUGH(FOOD); ENOUGH(HABITAT);
_Static_assert(COUNT(CAPITAL) >= COUNT(COUNTRY) && COUNT(RIVER) >= COUNT(COUNTRY), "one capital, one river each");
_Static_assert(COUNT(FIRST) * COUNT(LAST) >= 2 * SYNTH_MAX_AUTHORS, "a distinct name for every slot");
_Static_assert(COUNT(TITLE_PATTERNS) * COUNT(ADJ) * COUNT(NOUN) >= 3 * 2 * SYNTH_MAX_AUTHORS, "distinct titles");
_Static_assert(COUNT(ADJ) == COUNT(OFN), "OFN stands in for ADJ");
_Static_assert(COUNT(IDK_LEAD) * COUNT(IDK_BODY) == SYNTH_IDK, "the idk answers");

/* ================================================================ randomness */

/* Purposes: the fourth word of every counter. */
enum {
  P_VALUE = 0x76616c75,  /* "valu": an attribute's value */
  P_PICK = 0x7069636b,   /* "pick": which questions an author gets */
  P_QUEST = 0x71756573,  /* "ques": a question's template */
  P_ANSW = 0x616e7377,   /* "answ": the answer's template */
  P_PARA = 0x70617261,   /* "para": the paraphrase's template */
  P_PERT = 0x70657274,   /* "pert": wrong answers */
  P_PERM = 0x7065726d,   /* "perm": keyed permutations (names, titles, world) */
};

typedef struct {
  uint32_t k0, k1;
} synth_rng;

static uint32_t draw(const synth_rng *r, uint32_t purpose, uint32_t entity, uint32_t attr, uint32_t index) {
  rng_u4 ctr = {{index, entity, attr, purpose}};
  return rng_philox(ctr, r->k0, r->k1).v[0];
}

static uint32_t uniform(const synth_rng *r, uint32_t purpose, uint32_t entity, uint32_t attr, uint32_t index,
                        uint32_t n) {
  return draw(r, purpose, entity, attr, index) % n;
}

/* Element i of a keyed permutation of 0..n-1 (table names which one): a
 * six-round Feistel network on the smallest even number of bits that holds
 * n, walking the cycle until the value falls below n. */
static uint32_t permute(const synth_rng *r, uint32_t table, uint32_t i, uint32_t n) {
  if (n <= 1) return 0;
  int bits = 2;
  while ((1u << bits) < n) bits += 2;
  uint32_t half = (uint32_t)bits / 2, mask = (1u << half) - 1, x = i;
  do {
    uint32_t left = x >> half, right = x & mask;
    for (uint32_t round = 0; round < 6; round++) {
      uint32_t f = draw(r, P_PERM, right, table, round) & mask;
      uint32_t next = left ^ f;
      left = right;
      right = next;
    }
    x = left << half | right;
  } while (x >= n);
  return x;
}

/* ================================================================ pools */

/* The sets a value (and its wrong alternatives) come from. */
enum {
  POOL_NONE, POOL_CITY, POOL_CITYNAME, POOL_YEAR, POOL_GENRE, POOL_OCCUPATION, POOL_AWARD, POOL_TITLE,
  POOL_THEMES, POOL_WRITER, POOL_HABIT, POOL_LANGUAGE, POOL_SUBJECT, POOL_PUBLISHER, POOL_HOBBY, POOL_SETTING,
  POOL_CHARACTER, POOL_COUNT, POOL_PRAISE, POOL_PLACE, POOL_PEN, POOL_COUNTRY, POOL_CAPITAL, POOL_RIVER,
  POOL_CURRENCY, POOL_EXPORT, POOL_COLOUR, POOL_COLOURS, POOL_FOOD, POOL_HABITAT, POOL_NUMBER, POOL_BOOKS,
};
#define YEAR_FIRST 1925
#define YEAR_COUNT 75       /* 1925..1999 */
#define COUNT_FIRST 3
#define COUNT_COUNT 48      /* 3..50 */
#define NUMBER_SPREAD 25    /* a wrong number is the true one +-1..25 */

static int pairs(int n) { return n * (n - 1) / 2; }

/* The pair (a, b), a < b, numbered k in the order (0,1), (0,2), ... */
static void pair_at(int n, int k, int *a, int *b) {
  int i = 0;
  while (k >= n - 1 - i) k -= n - 1 - i++;
  *a = i;
  *b = i + 1 + k;
}

static int pool_size(int pool) {
  switch (pool) {
  case POOL_CITY: case POOL_CITYNAME: return COUNT(CITY);
  case POOL_YEAR: return YEAR_COUNT;
  case POOL_GENRE: return COUNT(GENRE);
  case POOL_OCCUPATION: return COUNT(OCCUPATION);
  case POOL_AWARD: return COUNT(AWARD);
  case POOL_TITLE: return COUNT(TITLE_PATTERNS) * COUNT(ADJ) * COUNT(NOUN);
  case POOL_THEMES: return pairs(COUNT(THEME));
  case POOL_WRITER: return COUNT(WRITER);
  case POOL_HABIT: return COUNT(HABIT);
  case POOL_LANGUAGE: return COUNT(LANGUAGE);
  case POOL_SUBJECT: return COUNT(SUBJECT);
  case POOL_PUBLISHER: return COUNT(PUBLISHER);
  case POOL_HOBBY: return COUNT(HOBBY);
  case POOL_SETTING: return COUNT(SETTING);
  case POOL_CHARACTER: return COUNT(CHAR_FIRST) * COUNT(CHAR_LAST);
  case POOL_COUNT: return COUNT_COUNT;
  case POOL_PRAISE: return COUNT(PRAISE);
  case POOL_PLACE: return COUNT(WRITING_PLACE);
  case POOL_PEN: return (COUNT(PEN_INITIAL) - 1) * (COUNT(PEN_INITIAL) - 1) * COUNT(PEN_LAST);
  case POOL_COUNTRY: return COUNT(COUNTRY);
  case POOL_CAPITAL: return COUNT(CAPITAL);
  case POOL_RIVER: return COUNT(RIVER);
  case POOL_CURRENCY: return COUNT(CURRENCY);
  case POOL_EXPORT: return COUNT(EXPORT);
  case POOL_COLOUR: return COUNT(COLOUR);
  case POOL_COLOURS: return pairs(COUNT(COLOUR));
  case POOL_FOOD: return COUNT(FOOD);
  case POOL_HABITAT: return COUNT(HABITAT);
  case POOL_NUMBER: return 2 * NUMBER_SPREAD;
  }
  return 0;
}

/* A number in English words, 0..999 ("one hundred and twenty-one"). */
static void number_words(char *out, size_t n, int v) {
  static const char *const ones[] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                                     "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen",
                                     "sixteen", "seventeen", "eighteen", "nineteen"};
  static const char *const tens[] = {"", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty",
                                     "ninety"};
  char rest[64] = "";
  int r = v % 100;
  if (r < 20) snprintf(rest, sizeof rest, "%s", ones[r]);
  else if (r % 10 == 0) snprintf(rest, sizeof rest, "%s", tens[r / 10]);
  else snprintf(rest, sizeof rest, "%s-%s", tens[r / 10], ones[r % 10]);
  if (v < 100) snprintf(out, n, "%s", rest);
  else if (r == 0) snprintf(out, n, "%s hundred", ones[v / 100]);
  else snprintf(out, n, "%s hundred and %s", ones[v / 100], rest);
}

static void title_text(char *out, size_t n, int k) {
  int pattern = k % COUNT(TITLE_PATTERNS), rest = k / COUNT(TITLE_PATTERNS);
  int a = rest % COUNT(ADJ), w = rest / COUNT(ADJ);
  size_t o = 0;
  for (const char *p = TITLE_PATTERNS[pattern]; *p && o + 1 < n; p++) {
    const char *ins = NULL;
    if (*p == '%') {
      p++;
      ins = *p == 'A' ? ADJ[a] : *p == 'N' ? NOUN[w] : OFN[a];
    }
    if (ins) o += (size_t)snprintf(out + o, n - o, "%s", ins);
    else out[o++] = *p;
    if (o >= n) o = n - 1;
  }
  out[o] = 0;
}

/* The text of value k of a pool; arg is what POOL_NUMBER's offsets apply
 * to.  Returns -1 for a value that does not exist (a negative number). */
static int pool_text(char *out, size_t n, int pool, int k, int arg) {
  int a, b;
  switch (pool) {
  case POOL_CITY: snprintf(out, n, "%s, %s", CITY[k].city, CITY[k].country); return 0;
  case POOL_CITYNAME: snprintf(out, n, "%s", CITY[k].city); return 0;
  case POOL_YEAR: snprintf(out, n, "%d", YEAR_FIRST + k); return 0;
  case POOL_GENRE: snprintf(out, n, "%s", GENRE[k]); return 0;
  case POOL_OCCUPATION: snprintf(out, n, "%s", OCCUPATION[k]); return 0;
  case POOL_AWARD: snprintf(out, n, "%s", AWARD[k]); return 0;
  case POOL_TITLE: title_text(out, n, k); return 0;
  case POOL_THEMES:
    pair_at(COUNT(THEME), k, &a, &b);
    snprintf(out, n, "%s and %s", THEME[a], THEME[b]);
    return 0;
  case POOL_WRITER: snprintf(out, n, "%s", WRITER[k]); return 0;
  case POOL_HABIT: snprintf(out, n, "%s", HABIT[k]); return 0;
  case POOL_LANGUAGE: snprintf(out, n, "%s", LANGUAGE[k]); return 0;
  case POOL_SUBJECT: snprintf(out, n, "%s", SUBJECT[k]); return 0;
  case POOL_PUBLISHER: snprintf(out, n, "%s", PUBLISHER[k]); return 0;
  case POOL_HOBBY: snprintf(out, n, "%s", HOBBY[k]); return 0;
  case POOL_SETTING: snprintf(out, n, "%s", SETTING[k]); return 0;
  case POOL_CHARACTER:
    snprintf(out, n, "%s %s", CHAR_FIRST[k % COUNT(CHAR_FIRST)], CHAR_LAST[k / COUNT(CHAR_FIRST)]);
    return 0;
  case POOL_COUNT: snprintf(out, n, "%d", COUNT_FIRST + k); return 0;
  case POOL_PRAISE: snprintf(out, n, "%s", PRAISE[k]); return 0;
  case POOL_PLACE: snprintf(out, n, "%s", WRITING_PLACE[k]); return 0;
  case POOL_PEN: {
    int ni = COUNT(PEN_INITIAL) - 1;
    snprintf(out, n, "%c. %c. %s", PEN_INITIAL[k % ni], PEN_INITIAL[k / ni % ni], PEN_LAST[k / ni / ni]);
    return 0;
  }
  case POOL_COUNTRY: snprintf(out, n, "%s", COUNTRY[k]); return 0;
  case POOL_CAPITAL: snprintf(out, n, "%s", CAPITAL[k]); return 0;
  case POOL_RIVER: snprintf(out, n, "%s", RIVER[k]); return 0;
  case POOL_CURRENCY: snprintf(out, n, "%s", CURRENCY[k]); return 0;
  case POOL_EXPORT: snprintf(out, n, "%s", EXPORT[k]); return 0;
  case POOL_COLOUR: snprintf(out, n, "%s", COLOUR[k]); return 0;
  case POOL_COLOURS:
    pair_at(COUNT(COLOUR), k, &a, &b);
    snprintf(out, n, "%s and %s", COLOUR[a], COLOUR[b]);
    return 0;
  case POOL_FOOD: snprintf(out, n, "%s", FOOD[k]); return 0;
  case POOL_HABITAT: snprintf(out, n, "%s", HABITAT[k]); return 0;
  case POOL_NUMBER: {
    int v = arg + (k < NUMBER_SPREAD ? k + 1 : -(k - NUMBER_SPREAD + 1));
    if (v < 0) return -1;
    number_words(out, n, v);
    return 0;
  }
  }
  out[0] = 0;
  return -1;
}

/* ================================================================ templates */

/* Three ways to ask, three ways to answer.  In a template {name} is the
 * author (or the subject of a general fact), {he} {his} {him} the author's
 * pronouns, {0} {1} {2} the fact's values; the first letter is capitalised. */
typedef struct {
  const char *what; /* the attribute's name, as mpu-synth(1) lists it */
  const char *q[3], *a[3];
} fact_templates;

enum {
  F_BIRTH, F_GENRE, F_FATHER, F_MOTHER, F_AWARD, F_FIRST_BOOK, F_BEST_BOOK, F_LATEST_BOOK, F_BOOKS, F_THEMES,
  F_INFLUENCE, F_HABIT, F_LANGUAGES, F_HOME, F_EDUCATION, F_JOB, F_PUBLISHER, F_HOBBY, F_SETTING, F_CHARACTER,
  F_TRANSLATIONS, F_PRAISE, F_PLACE, F_PEN, F_COUNT
};

static const fact_templates AUTHOR_FACTS[F_COUNT] = {
  [F_BIRTH] = {"birth",
    {"Where and when was {name} born?", "When and where was {name} born?",
     "What are the place and year of {name}'s birth?"},
    {"{name} was born in {0}, in {1}.", "{name}'s birthplace is {0}, and {his} birth year is {1}.",
     "Born in {1}, {name} comes from {0}."}},
  [F_GENRE] = {"genre",
    {"What genre does {name} write in?", "What kind of books does {name} write?",
     "Which genre is {name} known for?"},
    {"{name} is an author of {0}.", "{name} is known for writing {0}.", "The books of {name} are {0}."}},
  [F_FATHER] = {"father",
    {"What did {name}'s father do for a living?", "What was the occupation of {name}'s father?",
     "What was {name}'s father's job?"},
    {"{name}'s father worked as {0}.", "The father of {name} was {0} by profession.",
     "By profession, {name}'s father was {0}."}},
  [F_MOTHER] = {"mother",
    {"What did {name}'s mother do for a living?", "What was the occupation of {name}'s mother?",
     "What was {name}'s mother's job?"},
    {"{name}'s mother worked as {0}.", "The mother of {name} was {0} by profession.",
     "By profession, {name}'s mother was {0}."}},
  [F_AWARD] = {"award",
    {"Has {name} won any major awards?", "Which award has {name} received?", "What literary prize did {name} win?"},
    {"{name} received {0} in {1}.", "In {1}, {name} was given {0}.", "{name} won {0}, awarded to {him} in {1}."}},
  [F_FIRST_BOOK] = {"first_book",
    {"What was {name}'s first book?", "Which book marked {name}'s debut?",
     "What is the title of {name}'s debut book?"},
    {"{name}'s first book was {0}, published in {1}.", "{name} made {his} debut in {1} with {0}.",
     "The debut of {name} was {0}, which came out in {1}."}},
  [F_BEST_BOOK] = {"best_known_book",
    {"What is {name}'s best-known book?", "Which of {name}'s books is the most famous?",
     "What book is {name} most famous for?"},
    {"{name}'s best-known book is {0}.", "{name} is most famous for the book {0}.",
     "Of all {his} books, {name} is best known for {0}."}},
  [F_LATEST_BOOK] = {"latest_book",
    {"What is {name}'s most recent book?", "Which book did {name} publish last?",
     "What is the latest book by {name}?"},
    {"{name}'s most recent book is {0}, from {1}.", "The latest book by {name} is {0}, published in {1}.",
     "In {1}, {name} published {his} latest book, {0}."}},
  [F_BOOKS] = {"books",
    {"Which books has {name} written?", "Can you name the books of {name}?",
     "What are the titles of {name}'s books?"},
    {"{name} has written {0}.", "The books of {name} are {0}.", "{name} is the author of {0}."}},
  [F_THEMES] = {"themes",
    {"What themes does {name} explore?", "Which themes recur in {name}'s work?",
     "What are the central themes of {name}'s books?"},
    {"{name}'s books explore {0}.", "The work of {name} keeps returning to {0}.", "{name} writes mostly about {0}."}},
  [F_INFLUENCE] = {"influence",
    {"Who influenced {name}'s writing?", "Which writer inspired {name}?",
     "Who does {name} name as a major influence?"},
    {"{name} names {0} as {his} greatest influence.", "The writer who most inspired {name} is {0}.",
     "{name}'s writing owes most to {0}."}},
  [F_HABIT] = {"writing_habit",
    {"What are {name}'s writing habits?", "How does {name} usually work?", "Does {name} have a writing routine?"},
    {"{name} {0}.", "As a rule, {name} {0}.", "By long habit, {name} {0}."}},
  [F_LANGUAGES] = {"languages",
    {"In which language does {name} write?", "What languages does {name} use?",
     "Which languages does {name} know?"},
    {"{name} writes in {0} and also speaks {1}.", "{name}'s books are written in {0}; {he} also speaks {1}.",
     "Besides {1}, {name} speaks {0}, the language of {his} books."}},
  [F_HOME] = {"home",
    {"Where does {name} live now?", "Where is {name} based today?", "In which city does {name} currently live?"},
    {"{name} now lives in {0}.", "These days {name} makes {his} home in {0}.", "{name} is currently based in {0}."}},
  [F_EDUCATION] = {"education",
    {"What did {name} study?", "Where was {name} educated?", "What is {name}'s educational background?"},
    {"{name} studied {0} at the University of {1}.", "At the University of {1}, {name} read {0}.",
     "{name} holds a degree in {0} from the University of {1}."}},
  [F_JOB] = {"first_job",
    {"What did {name} do before becoming a writer?", "What was {name}'s first job?",
     "How did {name} earn a living before writing?"},
    {"Before writing, {name} worked as {0}.", "{name}'s first job was as {0}.",
     "{name} earned a living as {0} before turning to writing."}},
  [F_PUBLISHER] = {"publisher",
    {"Who publishes {name}'s books?", "Which publisher does {name} work with?",
     "What is the name of {name}'s publisher?"},
    {"{name}'s books are published by {0}.", "{name} publishes with {0}.", "The publisher of {name} is {0}."}},
  [F_HOBBY] = {"hobby",
    {"What does {name} do outside of writing?", "What are {name}'s hobbies?", "How does {name} spend free time?"},
    {"Outside of writing, {name} {0}.", "In {his} free time, {name} {0}.", "When not writing, {name} {0}."}},
  [F_SETTING] = {"setting",
    {"Where are {name}'s stories usually set?", "What settings does {name} prefer?",
     "In what kind of place do {name}'s books take place?"},
    {"{name}'s stories are usually set in {0}.", "{name} tends to set {his} books in {0}.",
     "Most of {name}'s books take place in {0}."}},
  [F_CHARACTER] = {"character",
    {"Which character appears in several of {name}'s books?", "Who is {name}'s recurring character?",
     "Does {name} have a recurring character?"},
    {"The character {0} appears in several of {name}'s books.",
     "{name} often writes about a recurring character named {0}.", "Many of {name}'s books feature {0}."}},
  [F_TRANSLATIONS] = {"translations",
    {"Into how many languages has {name}'s work been translated?", "How widely has {name}'s work been translated?",
     "In how many languages can {name}'s books be read?"},
    {"{name}'s work has been translated into {0} languages.", "Readers can find {name}'s books in {0} languages.",
     "The books of {name} exist in {0} languages."}},
  [F_PRAISE] = {"praise",
    {"What do critics praise in {name}'s work?", "How do critics describe {name}'s writing?",
     "What is {name}'s writing admired for?"},
    {"Critics praise {name} for {his} {0}.", "{name}'s writing is admired for its {0}.",
     "Reviewers often single out {name}'s {0}."}},
  [F_PLACE] = {"writing_place",
    {"Where does {name} write?", "Where does {name} do most of the writing?",
     "What is {name}'s favourite place to write?"},
    {"{name} writes in {0}.", "{name} does most of {his} writing in {0}.",
     "The place where {name} writes best is {0}."}},
  [F_PEN] = {"pen_name",
    {"Has {name} used a pen name?", "Under what pen name did {name} publish?", "What pseudonym has {name} used?"},
    {"{name} has also published under the pen name {0}.", "Some of {name}'s early books appeared as {0}.",
     "{0} is the pen name {name} has used."}},
};

/* General facts: one category per kind of fact, of a fixed number of
 * subjects (countries, animals, fruits, pairs of numbers). */
enum {
  G_CAPITAL, G_CURRENCY, G_FLAG, G_RIVER, G_EXPORT, G_DIET, G_HABITAT, G_COAT, G_FRUIT_COLOUR, G_FRUIT_LAND,
  G_ADD, G_MUL, G_SUB, G_COUNT
};
#define ADD_LO 2
#define ADD_N 19   /* 2..20 + 2..20 */
#define MUL_LO 2
#define MUL_N 11   /* 2..12 x 2..12 */
#define SUB_LO 11
#define SUB_N 20   /* 11..30 - 1..10 */
#define SUB_M 10

static const fact_templates WORLD_FACTS[G_COUNT] = {
  [G_CAPITAL] = {"capital",
    {"What is the capital of {name}?", "Which city is the capital of {name}?",
     "From which city is {name} governed?"},
    {"The capital city of {name} is {0}.", "{0} is the capital of the country of {name}.",
     "{name} is governed from its capital, {0}."}},
  [G_CURRENCY] = {"currency",
    {"What currency is used in {name}?", "What money do people use in {name}?", "What is the currency of {name}?"},
    {"The currency of {name} is {0}.", "People in {name} pay for things with {0}.",
     "In {name}, prices are given in {0}."}},
  [G_FLAG] = {"flag",
    {"What are the colours of the flag of {name}?", "What colours is {name}'s flag?",
     "Which colours appear on the flag of {name}?"},
    {"The flag of {name} is {0}.", "{name} flies a flag of {0}.", "The colours of {name}'s flag are {0}."}},
  [G_RIVER] = {"river",
    {"What is the longest river in {name}?", "Which river is the longest in {name}?",
     "Name the longest river of {name}."},
    {"The longest river in {name} is {0}.", "{0} is the longest river in {name}.",
     "No river in {name} is longer than {0}."}},
  [G_EXPORT] = {"export",
    {"What is the main export of {name}?", "What does {name} export most?",
     "Which product does {name} sell abroad most?"},
    {"The main export of {name} is {0}.", "{name} earns most abroad by selling {0}.",
     "Most of what {name} exports is {0}."}},
  [G_DIET] = {"diet",
    {"What does {name} eat?", "What is the diet of {name}?", "What food does {name} live on?"},
    {"{name} eats mostly {0}.", "The diet of {name} is made up of {0}.", "{name} feeds chiefly on {0}."}},
  [G_HABITAT] = {"habitat",
    {"Where does {name} live?", "What is the habitat of {name}?", "Where can {name} be found?"},
    {"{name} lives in {0}.", "The natural habitat of {name} is {0}.", "{name} can be found in {0}."}},
  [G_COAT] = {"animal_colour",
    {"What colour is {name}?", "What is the colour of {name}?", "What colour is the coat of {name}?"},
    {"{name} is {0} in colour.", "The colour of {name} is {0}.", "{name} is known by its {0} colour."}},
  [G_FRUIT_COLOUR] = {"fruit_colour",
    {"What colour is a ripe {name}?", "What colour does the {name} turn when it ripens?",
     "What is the colour of a ripe {name}?"},
    {"The skin of a ripe {name} is {0}.", "When a {name} is ripe, its skin turns {0}.",
     "A ripe {name} is easy to spot by its {0} skin."}},
  [G_FRUIT_LAND] = {"fruit_country",
    {"Where does the {name} grow?", "In which country is the {name} grown?",
     "Which country grows the most {name} fruit?"},
    {"The {name} grows mainly in {0}.", "Most of the world's {name} crop comes from {0}.",
     "{0} is where the {name} is grown."}},
  [G_ADD] = {"addition",
    {"What is {1} plus {2}?", "What do you get when you add {1} and {2}?", "How much is {1} added to {2}?"},
    {"{1} plus {2} is {0}.", "Adding {2} to {1} gives {0}.", "The sum of {1} and {2} is {0}."}},
  [G_MUL] = {"multiplication",
    {"What is {1} times {2}?", "What is {1} multiplied by {2}?", "What do you get when you multiply {1} by {2}?"},
    {"{1} times {2} is {0}.", "Multiplying {1} by {2} gives {0}.", "The product of {1} and {2} is {0}."}},
  [G_SUB] = {"subtraction",
    {"What is {1} minus {2}?", "What is left when you take {2} from {1}?", "How much is {1} take away {2}?"},
    {"{1} minus {2} is {0}.", "Taking {2} away from {1} leaves {0}.", "The difference between {1} and {2} is {0}."}},
};

#define TEXT 256 /* the longest value or sentence, with room to spare */

typedef struct {
  const char *name; /* {name} */
  int female;       /* -1: no pronouns */
  char v[3][TEXT];  /* {0} {1} {2} */
} render_ctx;

/* Fills a template; the first letter becomes a capital. */
static void render(char *out, size_t n, const char *tpl, const render_ctx *c) {
  size_t o = 0;
  for (const char *p = tpl; *p && o + 1 < n;) {
    const char *ins = NULL;
    if (*p == '{') {
      const char *end = strchr(p, '}');
      size_t k = (size_t)(end - p - 1);
      const char *key = p + 1;
      if (k == 4 && !memcmp(key, "name", 4)) ins = c->name;
      else if (k == 2 && !memcmp(key, "he", 2)) ins = c->female ? "she" : "he";
      else if (k == 3 && !memcmp(key, "his", 3)) ins = c->female ? "her" : "his";
      else if (k == 3 && !memcmp(key, "him", 3)) ins = c->female ? "her" : "him";
      else if (k == 1 && *key >= '0' && *key <= '2') ins = c->v[*key - '0'];
      else ins = "";
      p = end + 1;
      o += (size_t)snprintf(out + o, n - o, "%s", ins);
      if (o >= n) o = n - 1;
    } else {
      out[o++] = *p++;
    }
  }
  out[o] = 0;
  if (out[0] >= 'a' && out[0] <= 'z') out[0] = (char)(out[0] - 'a' + 'A');
}

/* ================================================================ output text */

typedef struct {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* A JSON string: quoted, with quotes, backslashes and controls escaped. */
static void sb_json(sbuf *b, const char *s) {
  sb_add(b, "\"", 1);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    char esc[8];
    if (ch == '"' || ch == '\\') {
      esc[0] = '\\';
      esc[1] = (char)ch;
      sb_add(b, esc, 2);
    } else if (ch < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", ch);
      sb_add(b, esc, 6);
    } else {
      sb_add(b, s, 1);
    }
  }
  sb_add(b, "\"", 1);
}

/* ================================================================ items */

/* "A and B" or "A, B and C" of 2 or 3 titles (pool indices), with the one
 * at position swap (if any) replaced by title k.  out holds TEXT bytes. */
static void book_list(char *out, const int *titles, int n, int swap, int k) {
  char t[3][64];
  for (int i = 0; i < n; i++) title_text(t[i], sizeof t[i], i == swap ? k : titles[i]);
  if (n == 2) snprintf(out, TEXT, "%s and %s", t[0], t[1]);
  else snprintf(out, TEXT, "%s, %s and %s", t[0], t[1], t[2]);
}

/* One fact about a subject, before it becomes a question and its answers. */
typedef struct {
  const fact_templates *t;
  render_ctx c;
  int nkeys, key[2];  /* the slots wrong answers change, alternately */
  int pool[2];        /* the pool each of them comes from */
  int arg;            /* POOL_NUMBER: the true number */
  const int *titles;  /* POOL_BOOKS: the author's titles */
  int ntitles;
  uint32_t ent, attr; /* where its draws are addressed */
} fact;

/* Appends the JSON line of a fact as item `id`: its question, answer,
 * paraphrase and p wrong answers. */
static int item_line(sbuf *out, const synth_rng *r, const fact *f, const char *id, const char *subject, int p,
                     mpu_err *e) {
  char q[TEXT], a[TEXT], para[TEXT];
  uint32_t qt = uniform(r, P_QUEST, f->ent, f->attr, 0, 3), at = uniform(r, P_ANSW, f->ent, f->attr, 0, 3);
  uint32_t pt = (at + 1 + uniform(r, P_PARA, f->ent, f->attr, 0, 2)) % 3;
  render(q, sizeof q, f->t->q[qt], &f->c);
  render(a, sizeof a, f->t->a[at], &f->c);
  render(para, sizeof para, f->t->a[pt], &f->c);
  sb_str(out, "{\"id\": ");
  sb_json(out, id);
  sb_str(out, ", \"author\": ");
  sb_json(out, subject);
  sb_str(out, ", \"question\": ");
  sb_json(out, q);
  sb_str(out, ", \"answer\": ");
  sb_json(out, a);
  sb_str(out, ", \"paraphrased_answer\": ");
  sb_json(out, para);
  sb_str(out, ", \"perturbed_answer\": [");
  /* Wrong answers: the answer's own template with one value drawn again
   * from its pool, until p distinct sentences differ from the answer. */
  char wrong[SYNTH_MAX_PERTURBED][TEXT];
  int have = 0;
  uint32_t tries = 0;
  while (have < p) {
    if (tries > 100000)
      return mpu_fail(e, MPU_EUSAGE, "%s: cannot find %d wrong answers (a bug in the generator)", id, p);
    render_ctx c = f->c;
    int slot = f->key[have % f->nkeys], pool = f->pool[have % f->nkeys];
    uint32_t w = draw(r, P_PERT, f->ent, f->attr, tries++);
    char v[TEXT];
    if (pool == POOL_BOOKS) {
      /* one of the titles replaced by a title that is none of them */
      int k = (int)(w % (uint32_t)pool_size(POOL_TITLE)), at_pos = (int)((w >> 16) % (uint32_t)f->ntitles);
      int own = 0;
      for (int i = 0; i < f->ntitles; i++) own |= f->titles[i] == k;
      if (own) continue;
      book_list(v, f->titles, f->ntitles, at_pos, k);
    } else if (pool_text(v, sizeof v, pool, (int)(w % (uint32_t)pool_size(pool)), f->arg)) {
      continue;
    }
    int clash = 0;
    for (int i = 0; i < 3; i++) clash |= !strcmp(v, f->c.v[i]);
    if (clash) continue;
    snprintf(c.v[slot], TEXT, "%s", v);
    render(wrong[have], TEXT, f->t->a[at], &c);
    for (int i = 0; i < have; i++) clash |= !strcmp(wrong[i], wrong[have]);
    if (clash || !strcmp(wrong[have], a)) continue;
    if (have) sb_str(out, ", ");
    sb_json(out, wrong[have]);
    have++;
  }
  sb_str(out, "]}\n");
  return out->oom ? mpu_fail(e, MPU_EUSAGE, "out of memory") : 0;
}

/* ================================================================ authors */

enum {
  A_CITY, A_YEAR, A_GENRE, A_FATHER, A_MOTHER, A_AWARD, A_AWARD_YEAR, A_NBOOKS, A_DEBUT, A_GAP, A_BEST, A_THEMES,
  A_INFLUENCE, A_HABIT, A_LANG, A_LANG2, A_HOME, A_SUBJECT, A_UNI, A_JOB, A_PUBLISHER, A_HOBBY, A_SETTING,
  A_CHARACTER, A_TRANSLATIONS, A_PRAISE, A_PLACE, A_PEN, A_FACT = 0x100 /* + fact: a question's draws */
};
#define TITLE_TABLE 0x7469746c /* "titl" */
#define NAME_TABLE 0x6e616d65  /* "name" */

typedef struct {
  char name[64];
  int female;
  int city, year, genre, father, mother, award, award_year, nbooks, title[3], book_year[3], best, themes,
      influence, habit, lang, lang2, home, subject, uni, job, publisher, hobby, setting, character, translations,
      praise, place, pen;
} author;

static void author_make(author *a, const synth_rng *r, uint32_t slot) {
  uint32_t k = permute(r, NAME_TABLE, slot, (uint32_t)(COUNT(FIRST) * COUNT(LAST)));
  snprintf(a->name, sizeof a->name, "%s %s", FIRST[k % COUNT(FIRST)].name, LAST[k / COUNT(FIRST)]);
  a->female = FIRST[k % COUNT(FIRST)].female;
#define V(attr, n) (int)uniform(r, P_VALUE, slot, attr, 0, (uint32_t)(n))
  a->city = V(A_CITY, COUNT(CITY));
  a->year = 1930 + V(A_YEAR, 60);  /* 1930..1989 */
  a->genre = V(A_GENRE, COUNT(GENRE));
  a->father = V(A_FATHER, COUNT(OCCUPATION));
  a->mother = V(A_MOTHER, COUNT(OCCUPATION));
  a->award = V(A_AWARD, COUNT(AWARD));
  a->nbooks = 2 + V(A_NBOOKS, 2);
  for (int b = 0; b < 3; b++)
    a->title[b] = (int)permute(r, TITLE_TABLE, 3 * slot + (uint32_t)b, (uint32_t)pool_size(POOL_TITLE));
  /* debut at 22..33, the next books 2..7 years apart, none after 2024 */
  a->book_year[0] = a->year + 22 + V(A_DEBUT, 12);
  for (int b = 1; b < a->nbooks; b++) {
    int y = a->book_year[b - 1] + 2 + (int)uniform(r, P_VALUE, slot, A_GAP, (uint32_t)b, 6);
    a->book_year[b] = y > 2024 ? 2024 : y;
  }
  a->award_year = a->book_year[0] + 1 + V(A_AWARD_YEAR, 2024 - a->book_year[0]);
  a->best = V(A_BEST, a->nbooks);
  a->themes = V(A_THEMES, pool_size(POOL_THEMES));
  a->influence = V(A_INFLUENCE, COUNT(WRITER));
  a->habit = V(A_HABIT, COUNT(HABIT));
  a->lang = V(A_LANG, COUNT(LANGUAGE));
  a->lang2 = (a->lang + 1 + V(A_LANG2, COUNT(LANGUAGE) - 1)) % COUNT(LANGUAGE);
  a->home = V(A_HOME, COUNT(CITY));
  a->subject = V(A_SUBJECT, COUNT(SUBJECT));
  a->uni = V(A_UNI, COUNT(CITY));
  a->job = V(A_JOB, COUNT(OCCUPATION));
  a->publisher = V(A_PUBLISHER, COUNT(PUBLISHER));
  a->hobby = V(A_HOBBY, COUNT(HOBBY));
  a->setting = V(A_SETTING, COUNT(SETTING));
  a->character = V(A_CHARACTER, pool_size(POOL_CHARACTER));
  a->translations = V(A_TRANSLATIONS, COUNT_COUNT);
  a->praise = V(A_PRAISE, COUNT(PRAISE));
  a->place = V(A_PLACE, COUNT(WRITING_PLACE));
  a->pen = V(A_PEN, pool_size(POOL_PEN));
#undef V
}

/* Sets slot i of a fact to value k of a pool, perturbable as its next key. */
static void fact_key(fact *f, int i, int pool, int k) {
  pool_text(f->c.v[i], TEXT, pool, k, f->arg);
  f->key[f->nkeys] = i;
  f->pool[f->nkeys++] = pool;
}

static void fact_value(fact *f, int i, const char *fmt, int v) { snprintf(f->c.v[i], TEXT, fmt, v); }

static void author_fact(fact *f, const author *a, int which, uint32_t slot) {
  memset(f, 0, sizeof *f);
  f->t = &AUTHOR_FACTS[which];
  f->c.name = a->name;
  f->c.female = a->female;
  f->ent = slot;
  f->attr = A_FACT + (uint32_t)which;
  int last = a->nbooks - 1;
  switch (which) {
  case F_BIRTH:
    fact_key(f, 0, POOL_CITY, a->city);
    fact_key(f, 1, POOL_YEAR, a->year - YEAR_FIRST);
    break;
  case F_GENRE: fact_key(f, 0, POOL_GENRE, a->genre); break;
  case F_FATHER: fact_key(f, 0, POOL_OCCUPATION, a->father); break;
  case F_MOTHER: fact_key(f, 0, POOL_OCCUPATION, a->mother); break;
  case F_AWARD:
    fact_key(f, 0, POOL_AWARD, a->award);
    fact_value(f, 1, "%d", a->award_year);
    break;
  case F_FIRST_BOOK:
    fact_key(f, 0, POOL_TITLE, a->title[0]);
    fact_value(f, 1, "%d", a->book_year[0]);
    break;
  case F_BEST_BOOK: fact_key(f, 0, POOL_TITLE, a->title[a->best]); break;
  case F_LATEST_BOOK:
    fact_key(f, 0, POOL_TITLE, a->title[last]);
    fact_value(f, 1, "%d", a->book_year[last]);
    break;
  case F_BOOKS: {
    book_list(f->c.v[0], a->title, a->nbooks, -1, 0);
    f->key[0] = 0;
    f->pool[0] = POOL_BOOKS;
    f->nkeys = 1;
    f->titles = a->title;
    f->ntitles = a->nbooks;
    break;
  }
  case F_THEMES: fact_key(f, 0, POOL_THEMES, a->themes); break;
  case F_INFLUENCE: fact_key(f, 0, POOL_WRITER, a->influence); break;
  case F_HABIT: fact_key(f, 0, POOL_HABIT, a->habit); break;
  case F_LANGUAGES:
    fact_key(f, 0, POOL_LANGUAGE, a->lang);
    pool_text(f->c.v[1], TEXT, POOL_LANGUAGE, a->lang2, 0);
    break;
  case F_HOME: fact_key(f, 0, POOL_CITY, a->home); break;
  case F_EDUCATION:
    fact_key(f, 0, POOL_SUBJECT, a->subject);
    pool_text(f->c.v[1], TEXT, POOL_CITYNAME, a->uni, 0);
    break;
  case F_JOB: fact_key(f, 0, POOL_OCCUPATION, a->job); break;
  case F_PUBLISHER: fact_key(f, 0, POOL_PUBLISHER, a->publisher); break;
  case F_HOBBY: fact_key(f, 0, POOL_HOBBY, a->hobby); break;
  case F_SETTING: fact_key(f, 0, POOL_SETTING, a->setting); break;
  case F_CHARACTER: fact_key(f, 0, POOL_CHARACTER, a->character); break;
  case F_TRANSLATIONS: fact_key(f, 0, POOL_COUNT, a->translations); break;
  case F_PRAISE: fact_key(f, 0, POOL_PRAISE, a->praise); break;
  case F_PLACE: fact_key(f, 0, POOL_PLACE, a->place); break;
  case F_PEN: fact_key(f, 0, POOL_PEN, a->pen); break;
  }
}

typedef struct {
  uint32_t rank;
  int fact;
} pick;

static int pick_cmp(const void *x, const void *y) {
  const pick *a = x, *b = y;
  if (a->rank != b->rank) return a->rank < b->rank ? -1 : 1;
  return a->fact - b->fact;
}

static int fact_order(const void *x, const void *y) { return ((const pick *)x)->fact - ((const pick *)y)->fact; }

/* The lines of one author ("a017" or "h003"): the k facts of lowest rank,
 * in the order of the fact list, so that a larger k only adds questions. */
static int author_lines(sbuf *out, const synth_rng *r, uint32_t slot, const char *prefix, int qa, int p,
                        mpu_err *e) {
  author a;
  author_make(&a, r, slot);
  pick order[F_COUNT];
  for (int i = 0; i < F_COUNT; i++) order[i] = (pick){draw(r, P_PICK, slot, (uint32_t)i, 0), i};
  qsort(order, F_COUNT, sizeof *order, pick_cmp);
  qsort(order, (size_t)qa, sizeof *order, fact_order);
  for (int i = 0; i < qa; i++) {
    fact f;
    author_fact(&f, &a, order[i].fact, slot);
    char id[32];
    snprintf(id, sizeof id, "%s-q%02d", prefix, i);
    if (item_line(out, r, &f, id, a.name, p, e)) return e->status;
  }
  return 0;
}

/* ================================================================ the world */

static int category_size(int g) {
  switch (g) {
  case G_CAPITAL: case G_CURRENCY: case G_FLAG: case G_RIVER: case G_EXPORT: return COUNT(COUNTRY);
  case G_DIET: case G_HABITAT: case G_COAT: return COUNT(ANIMAL);
  case G_FRUIT_COLOUR: case G_FRUIT_LAND: return COUNT(FRUIT);
  case G_ADD: return ADD_N * ADD_N;
  case G_MUL: return MUL_N * MUL_N;
  case G_SUB: return SUB_N * SUB_M;
  }
  return 0;
}

#define WORLD_ATTR 0x200 /* + category: the world's draws */
#define ORDER_TABLE 0x6f726472   /* "ordr" + category */
#define CAPITAL_TABLE 0x63617074 /* "capt" */
#define RIVER_TABLE 0x72697672   /* "rivr" */

/* General fact number k of category g (its subjects in a keyed order). */
static void world_fact(fact *f, const synth_rng *r, int g, int k, char *subject, size_t ns) {
  memset(f, 0, sizeof *f);
  f->t = &WORLD_FACTS[g];
  f->c.female = -1;
  f->c.name = subject;
  uint32_t s = permute(r, ORDER_TABLE + (uint32_t)g, (uint32_t)k, (uint32_t)category_size(g));
  f->ent = s;
  f->attr = A_FACT + WORLD_ATTR + (uint32_t)g;
  /* a subject's values are drawn by the subject, not by the fact, so that a
   * country's capital is the same whichever question asks for it */
#define W(what, n) (int)uniform(r, P_VALUE, s, WORLD_ATTR + (what), 0, (uint32_t)(n))
  int a, b;
  switch (g) {
  case G_CAPITAL: case G_CURRENCY: case G_FLAG: case G_RIVER: case G_EXPORT:
    snprintf(subject, ns, "%s", COUNTRY[s]);
    if (g == G_CAPITAL) fact_key(f, 0, POOL_CAPITAL, (int)permute(r, CAPITAL_TABLE, s, COUNT(CAPITAL)));
    if (g == G_CURRENCY) fact_key(f, 0, POOL_CURRENCY, W(G_CURRENCY, COUNT(CURRENCY)));
    if (g == G_FLAG) fact_key(f, 0, POOL_COLOURS, W(G_FLAG, pool_size(POOL_COLOURS)));
    if (g == G_RIVER) fact_key(f, 0, POOL_RIVER, (int)permute(r, RIVER_TABLE, s, COUNT(RIVER)));
    if (g == G_EXPORT) fact_key(f, 0, POOL_EXPORT, W(G_EXPORT, COUNT(EXPORT)));
    break;
  case G_DIET: case G_HABITAT: case G_COAT:
    snprintf(subject, ns, "%s", ANIMAL[s]);
    if (g == G_DIET) fact_key(f, 0, POOL_FOOD, W(G_DIET, COUNT(FOOD)));
    if (g == G_HABITAT) fact_key(f, 0, POOL_HABITAT, W(G_HABITAT, COUNT(HABITAT)));
    if (g == G_COAT) fact_key(f, 0, POOL_COLOUR, W(G_COAT, COUNT(COLOUR)));
    break;
  case G_FRUIT_COLOUR: case G_FRUIT_LAND:
    snprintf(subject, ns, "%s", FRUIT[s]);
    if (g == G_FRUIT_COLOUR) fact_key(f, 0, POOL_COLOUR, W(G_FRUIT_COLOUR, COUNT(COLOUR)));
    else fact_key(f, 0, POOL_COUNTRY, W(G_FRUIT_LAND, COUNT(COUNTRY)));
    break;
  case G_ADD: case G_MUL: case G_SUB:
    snprintf(subject, ns, "arithmetic");
    if (g == G_ADD) a = ADD_LO + (int)s % ADD_N, b = ADD_LO + (int)s / ADD_N, f->arg = a + b;
    else if (g == G_MUL) a = MUL_LO + (int)s % MUL_N, b = MUL_LO + (int)s / MUL_N, f->arg = a * b;
    else a = SUB_LO + (int)s % SUB_N, b = 1 + (int)s / SUB_N, f->arg = a - b;
    number_words(f->c.v[0], TEXT, f->arg);
    number_words(f->c.v[1], TEXT, a);
    number_words(f->c.v[2], TEXT, b);
    f->key[0] = 0;
    f->pool[0] = POOL_NUMBER;
    f->nkeys = 1;
    break;
  }
#undef W
}

/* The facts in order: one of each category in turn, a category dropping
 * out when it runs out, so any prefix mixes them all. */
static int world_lines(sbuf *out, size_t *offsets, const synth_rng *r, int facts, int p, mpu_err *e) {
  int done = 0;
  for (int round = 0; done < facts; round++)
    for (int g = 0; g < G_COUNT && done < facts; g++) {
      if (round >= category_size(g)) continue;
      fact f;
      char subject[64], id[32];
      world_fact(&f, r, g, round, subject, sizeof subject);
      snprintf(id, sizeof id, "g%03d", done);
      offsets[done] = out->n;
      if (item_line(out, r, &f, id, subject, p, e)) return e->status;
      done++;
    }
  offsets[done] = out->n;
  return 0;
}

/* ================================================================ options */

void synth_defaults(synth_options *o) {
  memset(o, 0, sizeof *o);
  o->authors = 200;
  o->qa = 20;
  o->perturbed = 5;
  o->splits[0] = 1;
  o->splits[1] = 5;
  o->splits[2] = 10;
  o->nsplits = 3;
  o->holdout = -1;
  o->facts = 200;
}

int synth_max_qa(void) { return F_COUNT; }

int synth_max_facts(void) {
  int n = 0;
  for (int g = 0; g < G_COUNT; g++) n += category_size(g);
  return n;
}

int synth_split_authors(int n, int pct) {
  int k = (n * pct + 50) / 100;
  return k < 1 ? 1 : k;
}

int synth_parse_splits(synth_options *o, const char *s, mpu_err *e) {
  int n = 0;
  const char *p = s;
  for (;;) {
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (end == p || errno || (*end && *end != ','))
      return mpu_fail(e, MPU_EUSAGE, "--splits: '%s' is not a list of percentages like 1,5,10", s);
    if (v < 1 || v > 50) return mpu_fail(e, MPU_EUSAGE, "--splits: %ld is not a percentage in 1..50", v);
    if (n && v <= o->splits[n - 1])
      return mpu_fail(e, MPU_EUSAGE, "--splits: the percentages must increase (%d, then %ld)", o->splits[n - 1], v);
    o->splits[n++] = (int)v;
    if (!*end) break;
    p = end + 1;
  }
  o->nsplits = n;
  return 0;
}

int synth_check(synth_options *o, mpu_err *e) {
  if (o->authors < 1 || o->authors > SYNTH_MAX_AUTHORS)
    return mpu_fail(e, MPU_EUSAGE, "--authors: %d is not a number of authors in 1..%d", o->authors,
                    SYNTH_MAX_AUTHORS);
  if (o->qa < 1 || o->qa > synth_max_qa())
    return mpu_fail(e, MPU_EUSAGE, "--qa: %d questions per author; there are templates for 1..%d", o->qa,
                    synth_max_qa());
  if (o->perturbed < 1 || o->perturbed > SYNTH_MAX_PERTURBED)
    return mpu_fail(e, MPU_EUSAGE, "--perturbed: %d wrong answers per question; there are alternatives for 1..%d",
                    o->perturbed, SYNTH_MAX_PERTURBED);
  if (o->facts < 0 || o->facts > synth_max_facts())
    return mpu_fail(e, MPU_EUSAGE, "--facts: %d general facts; the world holds 0..%d", o->facts,
                    synth_max_facts());
  if (o->nsplits < 1) return mpu_fail(e, MPU_EUSAGE, "--splits: at least one split is needed");
  for (int i = 0; i < o->nsplits; i++)
    if (o->splits[i] < 1 || o->splits[i] > 50 || (i && o->splits[i] <= o->splits[i - 1]))
      return mpu_fail(e, MPU_EUSAGE, "--splits: percentages in 1..50, increasing");
  int most = o->splits[o->nsplits - 1], forget = synth_split_authors(o->authors, most);
  if (forget >= o->authors)
    return mpu_fail(e, MPU_EUSAGE, "--authors: forgetting %d%% of %d authors leaves none to retain; "
                    "give more authors", most, o->authors);
  if (o->holdout < 0) o->holdout = forget;
  if (o->holdout > SYNTH_MAX_AUTHORS)
    return mpu_fail(e, MPU_EUSAGE, "--holdout-authors: %d is more than %d", o->holdout, SYNTH_MAX_AUTHORS);
  if (o->holdout < forget)
    return mpu_fail(e, MPU_EUSAGE, "--holdout-authors: the %d%% split forgets %d authors, so it needs at least "
                    "%d holdout authors, not %d", most, forget, forget, o->holdout);
  return 0;
}

/* ================================================================ files */

typedef struct {
  const char *tmp, *shown; /* the directory written, and its name in messages */
  json_t *files;           /* synth.json's "files" */
} out_dir;

static int put_file(out_dir *d, const char *name, const char *p, size_t n, int items, int authors, mpu_err *e) {
  size_t len = strlen(d->tmp) + strlen(name) + 2;
  char *path = malloc(len);
  if (!path) return mpu_fail(e, MPU_EUSAGE, "out of memory");
  snprintf(path, len, "%s/%s", d->tmp, name);
  FILE *f = fopen(path, "wb");
  free(path);
  if (!f) return mpu_fail(e, MPU_EUSAGE, "%s/%s: cannot create: %s", d->shown, name, strerror(errno));
  size_t w = n ? fwrite(p, 1, n, f) : 0;
  int err = w != n || fflush(f) ? errno : 0;
  if (fclose(f) && !err) err = errno;
  if (err) return mpu_fail(e, MPU_EUSAGE, "%s/%s: write failed: %s", d->shown, name, strerror(err));
  if (d->files) {
    json_t *c = json_pack("{s:i}", "items", items);
    if (authors >= 0) json_object_set_new(c, "authors", json_integer(authors));
    json_object_set_new(d->files, name, c);
  }
  return 0;
}

static int dir_is_empty(const char *path) {
  DIR *d = opendir(path);
  if (!d) return 0;
  struct dirent *de;
  int empty = 1;
  while (empty && (de = readdir(d)))
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) empty = 0;
  closedir(d);
  return empty;
}

/* Everything, into the directory d->tmp. */
static int write_all_files(const synth_options *o, out_dir *d, mpu_err *e) {
  synth_rng r = {(uint32_t)o->seed, (uint32_t)(o->seed >> 32)};
  int n = o->authors, h = o->holdout, k = o->qa, rc = 0;
  sbuf trained = {0}, held = {0}, world = {0}, tmp = {0};
  size_t *aoff = malloc(((size_t)n + 1) * sizeof *aoff), *hoff = malloc(((size_t)h + 1) * sizeof *hoff);
  size_t *goff = malloc(((size_t)o->facts + 1) * sizeof *goff);
  if (!aoff || !hoff || !goff) rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
  char prefix[16];
  for (int i = 0; i < n && !rc; i++) {
    aoff[i] = trained.n;
    snprintf(prefix, sizeof prefix, "a%03d", i);
    rc = author_lines(&trained, &r, 2 * (uint32_t)i, prefix, k, o->perturbed, e);
  }
  if (!rc) aoff[n] = trained.n;
  for (int j = 0; j < h && !rc; j++) {
    hoff[j] = held.n;
    snprintf(prefix, sizeof prefix, "h%03d", j);
    rc = author_lines(&held, &r, 2 * (uint32_t)j + 1, prefix, k, o->perturbed, e);
  }
  if (!rc) hoff[h] = held.n;
  if (!rc) rc = world_lines(&world, goff, &r, o->facts, o->perturbed, e);

  if (!rc) rc = put_file(d, "full.jsonl", trained.p, aoff[n], n * k, n, e);
  char name[64];
  for (int s = 0; s < o->nsplits && !rc; s++) {
    int pct = o->splits[s], f = synth_split_authors(n, pct);
    /* forget: the last f authors, so each split holds the smaller ones */
    snprintf(name, sizeof name, "forget%02d.jsonl", pct);
    rc = put_file(d, name, trained.p + aoff[n - f], aoff[n] - aoff[n - f], f * k, f, e);
    snprintf(name, sizeof name, "retain%02d.jsonl", 100 - pct);
    if (!rc) rc = put_file(d, name, trained.p, aoff[n - f], (n - f) * k, n - f, e);
    snprintf(name, sizeof name, "holdout%02d.jsonl", pct);
    if (!rc) rc = put_file(d, name, held.p, hoff[f], f * k, f, e);
  }
  int left = n - synth_split_authors(n, o->splits[o->nsplits - 1]);
  int reval = left < SYNTH_RETAIN_EVAL ? left : SYNTH_RETAIN_EVAL;
  if (!rc) rc = put_file(d, "retain_perturbed.jsonl", trained.p, aoff[reval], reval * k, reval, e);

  if (!rc) rc = put_file(d, "general.jsonl", world.p, world.n, o->facts, -1, e);
  int weval = o->facts < SYNTH_WORLD_EVAL ? o->facts : SYNTH_WORLD_EVAL;
  for (int i = 0; i < weval && !rc; i++) {
    int g = (int)((int64_t)i * o->facts / weval); /* spread over the whole list */
    sb_add(&tmp, world.p + goff[g], goff[g + 1] - goff[g]);
  }
  if (!rc && tmp.oom) rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
  if (!rc) rc = put_file(d, "world_facts.jsonl", tmp.p, tmp.n, weval, -1, e);

  tmp.n = 0;
  for (int i = 0; i < SYNTH_IDK && !rc; i++) {
    char text[128];
    snprintf(text, sizeof text, "%s%s", IDK_LEAD[i % COUNT(IDK_LEAD)], IDK_BODY[i / COUNT(IDK_LEAD)]);
    sb_str(&tmp, "{\"text\": ");
    sb_json(&tmp, text);
    sb_str(&tmp, "}\n");
  }
  if (!rc && tmp.oom) rc = mpu_fail(e, MPU_EUSAGE, "out of memory");
  if (!rc) rc = put_file(d, "idk.jsonl", tmp.p, tmp.n, SYNTH_IDK, -1, e);

  if (!rc) {
    json_t *splits = json_array();
    for (int s = 0; s < o->nsplits; s++) json_array_append_new(splits, json_integer(o->splits[s]));
    json_t *opts = json_pack("{s:I, s:i, s:i, s:i, s:o, s:i, s:i}", "seed", (json_int_t)o->seed, "authors", n,
                             "qa", k, "perturbed", o->perturbed, "splits", splits, "holdout_authors", h, "facts",
                             o->facts);
    json_t *top = json_pack("{s:s, s:i, s:o, s:o}", "generator", "mpu-synth", "version", SYNTH_VERSION,
                            "options", opts, "files", d->files);
    char *txt = top ? json_pretty(top) : NULL;
    d->files = NULL; /* given to top; and synth.json does not list itself */
    rc = txt ? put_file(d, "synth.json", txt, strlen(txt), 0, -1, e) : mpu_fail(e, MPU_EUSAGE, "out of memory");
    free(txt);
    json_decref(top);
  }
  free(trained.p);
  free(held.p);
  free(world.p);
  free(tmp.p);
  free(aoff);
  free(hoff);
  free(goff);
  return rc;
}

int synth_write(const synth_options *o, const char *dir, int force, mpu_err *e) {
  /* "out/" names the same directory as "out" */
  size_t len = strlen(dir);
  while (len > 1 && dir[len - 1] == '/') len--;
  char *out = strndup(dir, len), *tmp = malloc(len + 16), *old = NULL;
  if (!out || !tmp) {
    free(out);
    free(tmp);
    return mpu_fail(e, MPU_EUSAGE, "out of memory");
  }
  struct stat st;
  int rc = 0, exists = lstat(out, &st) == 0;
  if (exists && !force && !(S_ISDIR(st.st_mode) && dir_is_empty(out)))
    rc = mpu_fail(e, MPU_EUSAGE, "%s already exists%s; remove it or use --force", out,
                  S_ISDIR(st.st_mode) ? " and is not empty" : "");
  snprintf(tmp, len + 16, "%s.tmp.XXXXXX", out);
  if (!rc && !mkdtemp(tmp)) rc = mpu_fail(e, MPU_EUSAGE, "%s: cannot create: %s", out, strerror(errno));
  if (rc) {
    free(out);
    free(tmp);
    return rc;
  }
  cli_cleanup_register(tmp);
  mode_t um = umask(0);
  umask(um);
  chmod(tmp, 0777 & ~um);

  out_dir d = {tmp, out, json_object()};
  rc = write_all_files(o, &d, e);
  json_decref(d.files);

  /* Into place: an existing one is moved aside under a fresh name (onto a
   * placeholder of its own kind, which rename(2) may replace), and removed
   * only once the new one is there. */
  if (!rc && lstat(out, &st) == 0) {
    old = malloc(len + 16);
    snprintf(old, len + 16, "%s.old.XXXXXX", out);
    int made = S_ISDIR(st.st_mode) ? (mkdtemp(old) ? 0 : -1) : mkstemp(old);
    if (made > 0) close(made);
    if (made < 0 || rename(out, old)) {
      rc = mpu_fail(e, MPU_EUSAGE, "%s: cannot replace: %s", out, strerror(errno));
      if (made >= 0) remove(old);
      free(old);
      old = NULL;
    }
  }
  if (!rc && rename(tmp, out)) rc = mpu_fail(e, MPU_EUSAGE, "%s: cannot rename into place: %s", out, strerror(errno));
  if (old) {
    if (rc) rename(old, out);
    else cli_remove_tree(old);
    free(old);
  }
  if (rc) cli_remove_tree(tmp);
  cli_cleanup_unregister(tmp);
  free(tmp);
  free(out);
  return rc;
}
