#!/usr/bin/env python3
"""Regenerate the small original BEIR-format retrieval sample in data/sample/.

All text below was written for this project (original prose; invented details
are fictional). License: Apache-2.0, same as the project.

Layout of the data: CLUSTERS is a list of (topic, passages, queries).
  passages: exactly 5 (title, text) pairs sharing a subject, so they are hard
            negatives for each other.
  queries:  (text, [indices of relevant passages within the cluster]).
Ids are assigned in order (d0001.., q001..) and the train/test split is a fixed
rule on the global query index, so output is fully deterministic.
"""
import json
import os

CLUSTERS = []


def C(topic, passages, queries):
    CLUSTERS.append((topic, passages, queries))


C("volcanoes", [
    ("Shield volcanoes", "Shield volcanoes form from low-viscosity basaltic lava that flows long distances before cooling, producing broad, gently sloping cones. Because gas escapes easily from such fluid magma, their eruptions are usually effusive rather than explosive. The largest examples rise gradually over many kilometres, and their flanks rarely exceed a slope of ten degrees."),
    ("Stratovolcanoes", "Stratovolcanoes are built from alternating layers of hardened lava, ash and volcanic rock. Their magma is rich in silica, which makes it thick and traps dissolved gases until pressure is released violently. This explains why such steep, conical mountains are associated with the deadliest eruptions in recorded history, including pyroclastic flows that travel faster than a car."),
    ("Volcanic ash and aviation", "Fine volcanic ash is made of pulverised rock and glass, not soft soot. When aircraft fly through an ash cloud, the particles can melt inside hot jet engines and re-solidify on turbine blades, causing engines to lose power. Since the 1980s, regional advisory centres have tracked ash plumes and warned pilots to reroute."),
    ("Monitoring volcanoes", "Volcanologists forecast eruptions by combining several signals. Swarms of small earthquakes suggest magma is moving upward, satellite radar can detect the ground swelling by a few centimetres, and rising emissions of sulfur dioxide indicate fresh magma near the surface. No single measurement is decisive, so observatories rely on trends across all of them."),
    ("Volcanic soils", "Soils formed from weathered volcanic material are often exceptionally fertile because they release potassium, phosphorus and other minerals as they break down. This is one reason dense farming communities have settled on the slopes of active volcanoes despite the danger, growing crops such as coffee, grapes and rice in the dark, porous earth."),
], [
    ("What makes steep cone-shaped peaks with sticky molten rock blow up so violently?", [1]),
    ("How can flying through an eruption plume make a jet lose thrust?", [2]),
    ("why do farmers choose to live next to mountains that might erupt", [4]),
])

C("coral reefs", [
    ("Coral bleaching", "Corals get most of their energy from microscopic algae living inside their tissues. When seawater stays unusually warm for several weeks, the stressed corals expel these algae and turn pale white, an event called bleaching. Bleached corals are not dead, but if temperatures do not fall they starve and become vulnerable to disease."),
    ("Reef building", "Reef-building corals are colonies of tiny animals called polyps, each of which secretes a skeleton of calcium carbonate. Over thousands of years these skeletons accumulate into massive limestone structures. Most reef-building species grow only a few millimetres to a couple of centimetres per year, so a large reef represents an extremely long history."),
    ("Ocean acidification and reefs", "As the ocean absorbs carbon dioxide from the atmosphere, its water becomes slightly more acidic and carbonate ions grow scarcer. Corals, clams and some plankton need those ions to build shells and skeletons. Laboratory experiments show that coral growth slows measurably under the seawater chemistry expected later this century."),
    ("Reefs as coastal defence", "A healthy reef crest can dissipate most of the energy of incoming waves before they reach the shore. Coastal engineers estimate that protecting reefs is often cheaper than building artificial breakwaters, and several island nations now count reef restoration as part of their flood-protection budgets."),
    ("Deep cold-water corals", "Not all corals live in warm, shallow lagoons. Some species thrive in dark water hundreds of metres deep, at temperatures as low as four degrees Celsius. Lacking symbiotic algae, they feed by catching drifting particles and zooplankton, and their slow-growing mounds off northern Europe can be thousands of years old."),
], [
    ("reef animals that survive without sunlight in frigid depths", [4]),
    ("Does a coral that has gone white immediately perish?", [0]),
    ("Is conserving reefs a cheaper flood barrier than concrete sea walls?", [3]),
])

C("vaccines", [
    ("How vaccines train immunity", "A vaccine exposes the immune system to a harmless version or fragment of a pathogen so that it can produce antibodies and memory cells without the person becoming ill. If the real microbe appears later, these memory cells recognise it quickly and mount a faster, stronger response than they would on a first encounter."),
    ("Herd immunity", "When a large enough share of a population is immune to a contagious disease, chains of transmission break because the pathogen keeps encountering people it cannot infect. The threshold depends on how contagious the disease is; for measles, which spreads extremely efficiently, roughly ninety-five percent of people need protection."),
    ("Booster doses", "Protection from some vaccines wanes over years as antibody levels decline. A booster dose re-exposes the immune system to the antigen and raises antibody levels again. Tetanus is a classic example: adults are usually advised to receive a booster about every ten years, or sooner after a deep, dirty wound."),
    ("The cold chain", "Many vaccines lose potency if they get too warm or freeze. The system of refrigerated storage and transport that keeps them within a safe temperature range, usually between two and eight degrees Celsius, is called the cold chain. Heat-sensitive indicator labels on vials change colour if the product has been exposed to damaging heat."),
    ("Adjuvants", "Some vaccines contain adjuvants, substances that strengthen the immune response to the antigen. Aluminium salts have been used for this purpose for nearly a century. By provoking mild local inflammation at the injection site, adjuvants attract immune cells and allow a smaller amount of antigen to produce adequate protection."),
], [
    ("what proportion of a community must be protected to halt measles outbreaks", [1]),
    ("How often should grown-ups get another lockjaw shot?", [2]),
    ("additive in jabs that amplifies the body's reaction so less antigen is required", [4]),
])

C("antibiotics", [
    ("How resistance spreads", "Bacteria become resistant to antibiotics through random mutations and by swapping small rings of DNA called plasmids with one another. When an antibiotic kills susceptible cells, resistant survivors multiply and take over. Frequent or unnecessary use therefore accelerates the spread of resistant strains in hospitals and farms."),
    ("Penicillin discovery", "In 1928 a mould contaminated one of Alexander Fleming's bacterial culture plates, and he noticed that the bacteria around it had died. Turning the active substance, penicillin, into a usable medicine took another decade of work by a team in Oxford, and large-scale production began during the Second World War."),
    ("Broad versus narrow spectrum", "Broad-spectrum antibiotics act against many kinds of bacteria, which is useful when the cause of an infection is unknown. Narrow-spectrum drugs target a smaller group. Doctors prefer switching to a narrow agent once laboratory tests identify the organism, because it disturbs fewer of the harmless bacteria living in the gut."),
    ("Antibiotics and viruses", "Antibiotics have no effect on viruses, which lack the cell walls and bacterial machinery these drugs attack. Taking them for a common cold or influenza does not speed recovery and can cause side effects such as diarrhoea, while also contributing to resistance. Antiviral medicines work by entirely different mechanisms."),
    ("Finishing the course", "Traditional advice told patients to finish every tablet even after they felt better. Some researchers now argue that for certain infections shorter courses work just as well and reduce the total exposure that drives resistance. Patients are still advised to follow the specific instructions of their prescriber rather than stopping on their own."),
], [
    ("Will taking amoxicillin help me get over the flu faster?", [3]),
    ("Who saw a fungus kill germs on a lab dish, and in what year?", [1]),
    ("why change from a wide-acting drug to a targeted one once the lab identifies the bug", [2]),
])

C("photosynthesis", [
    ("Light reactions", "In the first stage of photosynthesis, chlorophyll in the thylakoid membranes absorbs light and uses its energy to split water molecules. This releases oxygen as a by-product and produces energy carriers, ATP and NADPH, that power the later stage. Nearly all the oxygen in Earth's atmosphere originated from this process."),
    ("The Calvin cycle", "The Calvin cycle takes place in the fluid of the chloroplast and does not need light directly. The enzyme rubisco attaches carbon dioxide to a five-carbon sugar, and a series of reactions fuelled by ATP and NADPH then converts the products into sugars the plant can use for growth or store as starch."),
    ("C4 and CAM plants", "Maize and sugarcane use a C4 pathway that concentrates carbon dioxide around rubisco, reducing wasteful reactions with oxygen in hot climates. Cacti and pineapples use CAM photosynthesis instead: they open their pores only at night to take in carbon dioxide, which lets them save water during the scorching day."),
    ("Why leaves change colour", "In autumn, deciduous trees stop producing chlorophyll and break down what remains, recovering nitrogen before the leaves fall. As the green fades, yellow and orange carotenoid pigments that were present all along become visible. Red tones come from anthocyanins, which some species actively produce in late season."),
    ("Stomata", "Stomata are microscopic pores, mostly on the underside of leaves, flanked by two guard cells that swell or shrink to open and close them. They let carbon dioxide in and water vapour out. A single leaf can have tens of thousands of them, and plants close them during drought to limit water loss."),
], [
    ("Why does a succulent only take in CO2 after dark?", [2]),
    ("Where do the golden hues of fall foliage come from?", [3]),
    ("which step of sugar production in green plants works without sunshine", [1]),
])

C("ancient rome", [
    ("Roman roads", "At its height the Roman state maintained more than eighty thousand kilometres of paved roads. Engineers laid them in layers of crushed stone and gravel beneath fitted paving slabs, and built them with a curved surface so that rainwater drained into side ditches. Milestones recorded distances to nearby towns."),
    ("Aqueducts", "Roman aqueducts carried water from distant springs to cities using only gravity. Surveyors kept a very slight, continuous downward gradient across tens of kilometres, sometimes less than one metre of drop per kilometre. Most of the channel ran underground; the famous arched bridges were used only to cross valleys."),
    ("Roman concrete", "Roman builders made concrete by mixing lime with volcanic ash from around the Bay of Naples. Harbour structures made with this material have survived two thousand years of seawater, because reactions with the sea slowly grew new minerals in the cracks, making the material stronger rather than weaker over time."),
    ("The Roman Senate", "During the Republic, the Roman Senate was an advisory council of former magistrates who usually served for life. Although it could not formally pass laws, its recommendations carried enormous weight, and it controlled state finances and foreign policy. Under the emperors its real power gradually diminished."),
    ("The legacy of Latin", "Latin, the language of Rome, evolved into the Romance languages, including Italian, Spanish, French, Portuguese and Romanian. Even English, a Germanic language, borrowed a large share of its vocabulary from Latin, directly or through French, especially in law, science and religion."),
], [
    ("How did ancient engineers move water to towns over long distances without pumps?", [1]),
    ("why did antique harbour cement get tougher in salt water", [2]),
    ("Which modern tongues descend from the speech of the ancient empire centred on Italy?", [4]),
])

C("castles", [
    ("Motte and bailey", "The earliest Norman castles in England were motte-and-bailey designs: a wooden tower on an artificial earth mound, overlooking an enclosed courtyard protected by a ditch and palisade. They could be built in a few weeks using forced local labour, which made them ideal for securing newly conquered territory."),
    ("Concentric castles", "Concentric castles surround an inner ring of high walls with a lower outer wall, so defenders on both rings could shoot at attackers simultaneously. Breaking through the first wall only trapped besiegers in a narrow killing zone. The design spread in Europe after crusaders encountered similar fortifications in the Middle East."),
    ("Sieges", "Rather than storming walls, medieval armies often besieged a castle until the defenders ran out of food or water. Attackers also dug tunnels beneath towers, propped them with timber, then burned the props so the masonry above collapsed. Trebuchets hurled heavy stones to batter walls from a distance."),
    ("Castle life", "Daily life in a castle centred on the great hall, where the household ate, conducted business and often slept. Kitchens were frequently in separate buildings to reduce fire risk. Garderobes, small toilets built into the walls, emptied down chutes into the moat or a pit below."),
    ("The decline of castles", "Castles lost their military value as gunpowder artillery became powerful enough to smash high stone walls in days. From the fifteenth century, military engineers favoured low, thick, angled bastions that deflected cannonballs, while nobles increasingly built comfortable country houses instead of fortresses."),
], [
    ("How did attackers bring down a tower by digging under it?", [2]),
    ("What made tall masonry fortifications obsolete?", [4]),
    ("quick-to-erect timber fort on a raised mound used by invaders", [0]),
])

C("bread baking", [
    ("Gluten development", "When wheat flour is mixed with water, two proteins combine to form gluten, an elastic network that traps gas. Kneading stretches and aligns this network, giving dough its strength. Bread flour contains more protein than cake flour, which is why it produces chewier loaves with a more open crumb."),
    ("Sourdough starters", "A sourdough starter is a culture of wild yeasts and lactic acid bacteria maintained in flour and water. The bacteria produce lactic and acetic acids that give the bread its tangy flavour and help it stay fresh longer. Bakers feed a starter regularly, and some claim theirs have been kept alive for decades."),
    ("Proofing", "Proofing is the final rise of shaped dough before baking, during which yeast produces carbon dioxide. Under-proofed dough bursts unevenly in the oven, while over-proofed dough collapses because the gluten can no longer hold the gas. A common test is to press the dough gently; it should spring back slowly."),
    ("Oven spring and steam", "In the first minutes of baking, heat makes trapped gas expand and yeast briefly accelerate, so the loaf rises sharply, an effect called oven spring. Bakers add steam at the start to keep the surface soft long enough for full expansion; later, the dry heat produces a glossy, crisp crust."),
    ("Crust browning", "The brown colour and roasted flavour of bread crust come mainly from the Maillard reaction between sugars and amino acids, which accelerates above roughly 140 degrees Celsius. Brushing dough with egg adds protein and sugar, producing a deeper shine, while a milk wash gives a softer, paler finish."),
], [
    ("why do bakers spray water into the hot chamber at the very beginning", [3]),
    ("What causes the sharp taste in naturally leavened loaves?", [1]),
    ("How can I tell if my shaped loaf rose for too long?", [2]),
])

C("coffee", [
    ("Arabica and robusta", "The two main coffee species differ markedly. Arabica grows best at higher altitudes, has a sweeter and more acidic flavour, and contains about half the caffeine of robusta. Robusta is hardier, resists more pests and tolerates heat, which makes it cheaper to grow; it is common in instant coffee and espresso blends."),
    ("Roasting coffee", "Green coffee beans have little aroma. Roasting at around 200 degrees Celsius triggers hundreds of chemical reactions that produce the familiar flavours. Light roasts keep more of the bean's fruity acidity, while dark roasts develop bitter, smoky notes as sugars caramelise and oils migrate to the surface."),
    ("Espresso extraction", "Espresso is made by forcing hot water through finely ground, compacted coffee at about nine bars of pressure. A typical shot takes twenty-five to thirty seconds. If water runs through too quickly the result tastes sour and thin; if it runs too slowly, over-extraction makes it harsh and bitter."),
    ("How caffeine works", "Caffeine works mainly by blocking adenosine receptors in the brain. Adenosine builds up during waking hours and promotes drowsiness, so blocking it makes people feel alert. Caffeine's half-life in healthy adults is around five hours, meaning an afternoon cup can still affect sleep late in the evening."),
    ("Origins of coffee drinking", "According to a popular legend, an Ethiopian goatherd noticed his animals became lively after eating red berries from a certain shrub. Historical records confirm that coffee drinking was established in Yemen's Sufi monasteries by the fifteenth century, and from there it spread through Cairo, Istanbul and eventually Europe."),
], [
    ("Which bean type has double the stimulant content and copes better with insects?", [0]),
    ("why a mid-afternoon latte can keep you up at night", [3]),
])

C("cheese", [
    ("Rennet and curdling", "Cheesemaking begins when milk is curdled, usually with rennet, an enzyme mixture traditionally taken from the stomach of young calves. The enzyme cuts a milk protein so that casein clumps together into curds, separating from the liquid whey. Today most rennet is produced by genetically engineered microbes."),
    ("Aging cheese", "During aging, bacteria and enzymes break down proteins and fats, deepening flavour and changing texture. A young cheddar may be sold after three months, while extra-mature versions age for two years or more. Crunchy white crystals in long-aged cheeses are often clusters of an amino acid called tyrosine."),
    ("Blue cheese", "Blue cheeses get their veins from Penicillium roqueforti mould. Cheesemakers pierce the wheels with steel needles to let air inside, which allows the mould to grow along the channels. The mould breaks down fats into compounds that give these cheeses their sharp, peppery taste."),
    ("Holes in Swiss cheese", "The round holes, or eyes, in Emmental-style cheeses are made by propionic bacteria that release carbon dioxide during warm ripening. Researchers in Switzerland also found that tiny particles of hay in the milk act as nuclei around which the gas bubbles form; very clean modern milk produced fewer holes."),
    ("Processed cheese", "Processed cheese is made by melting natural cheese together with emulsifying salts, such as sodium citrate, which stop the fat from separating. The result melts smoothly without becoming greasy or stringy, which is why it is popular on burgers. It was commercialised in the early twentieth century to extend shelf life."),
], [
    ("what are the gritty bits inside a very old hard cheddar", [1]),
    ("why did spotless dairy lead to fewer bubbles in Alpine cheese", [3]),
])

C("football tactics", [
    ("The offside rule", "In association football a player is offside if, when a teammate plays the ball, they are in the opponents' half and nearer the goal line than both the ball and the second-last defender. Being in an offside position is not itself an offence; it is penalised only if the player becomes involved in active play."),
    ("High pressing", "A high-pressing team tries to win the ball back close to the opponent's goal, immediately after losing possession. Forwards chase defenders and block passing lanes, forcing hurried clearances. The approach can produce chances quickly, but it demands high fitness and leaves space behind the defence if the press is beaten."),
    ("The back three", "Formations with three central defenders use wing-backs who patrol the entire flank, defending in their own area and overlapping in attack. When the wing-backs drop deep the shape becomes a back five, so the system can switch between defensive solidity and width without substitutions."),
    ("Expected goals", "Expected goals, or xG, estimates the probability that a shot becomes a goal, based on thousands of similar past attempts. Factors include distance, angle, the part of the body used and whether the shot followed a cross. A penalty is typically valued at around 0.76 xG."),
    ("Set pieces", "Corners and free kicks account for roughly a quarter to a third of goals in many professional leagues. Clubs now employ specialist coaches who design rehearsed routines, such as blocking runs to free a teammate, and analyse where opposing goalkeepers tend to position themselves."),
], [
    ("Is a striker punished merely for standing beyond the last defender?", [0]),
    ("How do analysts rate the quality of a scoring chance?", [3]),
])

C("tennis", [
    ("Tennis scoring", "Tennis uses an unusual scoring system: points progress from love to fifteen, thirty, forty and game. If both players reach forty, the score is deuce, and one player must win two consecutive points to take the game. Sets are usually won by the first to six games with a two-game margin."),
    ("Court surfaces", "Clay courts slow the ball and produce a high bounce, favouring patient baseline players who rely on topspin. Grass is fast and low-bouncing, which rewards powerful serves and volleying. Hard courts fall between the two, and most professional tournaments are played on them."),
    ("Tie-breaks", "Tie-breaks were introduced in the 1970s to prevent marathon sets. At six games all, players contest a special game in which the first to seven points, with a lead of two, wins the set. Major tournaments have adopted different rules for deciding sets, but all now use some form of final-set tie-break."),
    ("Racket technology", "Wooden rackets dominated until the late 1970s, when larger frames made from aluminium and then graphite composites appeared. The bigger head enlarged the sweet spot and the lighter, stiffer material let players hit harder, contributing to the rise of the power baseline game."),
    ("Electronic line calling", "Camera-based systems track the ball's trajectory and reconstruct where it landed to within a few millimetres. Initially players could challenge a limited number of line calls per set; some events have since replaced human line judges entirely with automated calls announced by recorded voices."),
], [
    ("Which playing surface suits big servers who rush the net?", [1]),
])

C("marathon running", [
    ("Glycogen and the wall", "The body stores a limited amount of carbohydrate as glycogen in the muscles and liver, enough for roughly ninety minutes to two hours of hard running. When these stores run low, runners experience hitting the wall, a sudden fatigue and slowdown. Taking in carbohydrates during the race delays this."),
    ("Carbohydrate loading", "In the two or three days before a marathon, many runners increase the carbohydrate share of their diet while reducing training volume. This practice, called carb loading, can raise muscle glycogen stores well above normal levels. It benefits events lasting longer than about ninety minutes but offers little for short races."),
    ("Tapering", "Tapering means reducing weekly training mileage, usually over two to three weeks before a race, while keeping some faster sessions. The reduction allows muscles to repair and energy stores to refill. Studies suggest a well-planned taper can improve race performance by a few percent."),
    ("Marathon history", "The marathon commemorates the legend of a Greek messenger who ran from the battlefield of Marathon to Athens. The race distance varied at first and was fixed at 42.195 kilometres in 1921, matching the course of the 1908 London Olympics, which reportedly started at Windsor Castle."),
    ("Hyponatremia", "Drinking far more water than the body loses in sweat can dilute blood sodium, a dangerous condition called hyponatremia. It most often affects slower runners who drink at every station for many hours. Symptoms include nausea, confusion and swelling; guidelines now advise drinking according to thirst."),
], [
    ("Why is the race length set at slightly more than 42 km?", [3]),
    ("Is it possible to overhydrate during a long road race?", [4]),
])

C("contract law", [
    ("Offer and acceptance", "A contract generally forms when one party makes a definite offer and the other accepts its terms without modification. A reply that changes the terms is treated not as acceptance but as a counter-offer, which cancels the original offer. Advertisements are usually considered invitations to negotiate rather than offers."),
    ("Consideration", "In common-law systems, a promise is normally enforceable only if each side gives something of value, known as consideration. It need not be a fair price; a token amount can suffice. A purely gratuitous promise to give a gift, by contrast, usually cannot be enforced unless it is made in a formal deed."),
    ("Breach and damages", "When a contract is breached, courts usually award damages intended to put the innocent party in the position they would have been in had the contract been performed. Losses that were not reasonably foreseeable when the contract was made are generally not recoverable."),
    ("Capacity to contract", "Some people lack full legal capacity to make binding contracts. Agreements made by minors are often voidable at the minor's option, except for contracts for necessities such as food and clothing. A person who was severely intoxicated or mentally incapacitated may also be able to avoid a contract."),
    ("Force majeure", "A force majeure clause excuses a party from performing when extraordinary events beyond its control, such as wars, natural disasters or epidemics, make performance impossible. Courts interpret these clauses narrowly, and a mere increase in cost usually does not qualify."),
], [
    ("If I answer a proposal with altered conditions, do we have a deal?", [0]),
    ("Can a teenager walk away from an agreement they signed?", [3]),
])

C("copyright", [
    ("Copyright duration", "In many countries, copyright in a work lasts for the life of the author plus seventy years. After it expires, the work enters the public domain and anyone may copy, adapt or publish it without permission. Works made by employees or for corporations often have fixed terms counted from publication."),
    ("Idea and expression", "Copyright protects the particular expression of an idea, not the idea itself. Two novelists can both write about a detective solving a murder on a train, but neither may copy the other's actual sentences or detailed plot sequence. Facts and mathematical methods are likewise outside protection."),
    ("Fair use", "United States law allows limited use of copyrighted material without permission under the doctrine of fair use. Courts weigh four factors: the purpose of the use, the nature of the work, how much was taken, and the effect on the market for the original. Criticism, teaching and parody are often considered fair."),
    ("Automatic protection", "Under the Berne Convention, copyright arises automatically when an original work is fixed in a tangible form, such as being written down or recorded. Registration is not required for protection, although in some countries registering makes it easier to sue and to claim certain damages."),
    ("Software licences", "Open-source licences grant users permission to copy, modify and distribute software under stated conditions. Permissive licences, such as MIT or Apache, allow incorporation into proprietary products, while copyleft licences, such as the GPL, require derivative works to be released under the same terms."),
], [
    ("Must I file paperwork for my song to be legally protected?", [3]),
    ("which kind of code license forces modified versions to stay open", [4]),
])

C("inflation", [
    ("Measuring inflation", "Inflation is usually measured with a consumer price index, which tracks the cost of a fixed basket of goods and services bought by typical households. Statistical agencies update the basket's weights periodically as spending habits change, and some measures exclude volatile food and energy prices to reveal underlying trends."),
    ("Interest rates and inflation", "Central banks raise their policy interest rate to slow inflation. Higher rates make borrowing more expensive, which cools spending on houses, cars and business investment, and reduces demand pressures on prices. The effect is not immediate; economists often estimate it takes a year or more to be fully felt."),
    ("Hyperinflation", "Hyperinflation is extremely rapid price growth, often defined as more than fifty percent per month. It usually follows governments printing money to cover large deficits. Shoppers rush to spend wages immediately, prices may be updated several times a day, and people switch to foreign currencies or barter."),
    ("Deflation", "Falling prices sound attractive, but persistent deflation can harm an economy. Consumers may postpone purchases expecting lower prices later, and the real burden of debts rises because wages and revenues shrink while loan balances stay fixed. Central banks therefore usually target low positive inflation, often around two percent."),
    ("Quantitative easing", "When short-term interest rates are already near zero, a central bank can buy large quantities of government bonds and other assets, a policy called quantitative easing. The purchases push down longer-term interest rates and add reserves to the banking system, aiming to encourage lending and investment."),
], [
    ("Why is a steady decline in the cost of goods bad for people with loans?", [3]),
    ("what tools do monetary authorities have once rates cannot go any lower", [4]),
])

C("international trade", [
    ("Comparative advantage", "The theory of comparative advantage, associated with David Ricardo, holds that two countries can both gain from trade even if one produces everything more efficiently. Each should specialise in the goods it produces at the lowest opportunity cost relative to the other, then exchange. The idea remains a cornerstone of trade economics."),
    ("Tariffs", "A tariff is a tax on imported goods. It raises the price of foreign products, which can protect domestic producers from competition but also increases costs for consumers and for firms that rely on imported parts. Trading partners frequently respond with retaliatory tariffs on the other country's exports."),
    ("Trade deficits", "A country runs a trade deficit when it imports more goods and services than it exports. Economists note that a deficit is not necessarily a sign of weakness: it is mirrored by inflows of foreign capital, and fast-growing economies that attract investment often import heavily."),
    ("Container shipping", "The standardised steel shipping container, introduced widely in the 1960s, cut the cost of loading cargo dramatically. Instead of dockworkers handling individual sacks and crates over several days, cranes could move sealed boxes between ships, trains and lorries in minutes, helping globalise manufacturing."),
    ("Rules of origin", "Free-trade agreements remove tariffs only for goods that originate in member countries. Rules of origin define how much of a product's value or which manufacturing steps must occur inside the bloc. Without them, goods could be shipped through the member with the lowest external tariff to avoid duties."),
], [
    ("Can a nation profit from commerce even if its partner is better at making everything?", [0]),
    ("How did the standard metal box change the expense of moving freight?", [3]),
])

C("databases", [
    ("Relational databases", "Relational databases store data in tables of rows and columns, and relationships between tables are expressed through shared keys. Queries are written in SQL, a declarative language in which the user describes what result is wanted rather than how to fetch it; the query planner chooses the execution strategy."),
    ("Database indexes", "A database index is an auxiliary structure, often a B-tree, that lets the system find rows matching a condition without scanning the whole table. Indexes greatly speed up reads but make inserts and updates slower, because every change must also update each index on the table."),
    ("ACID transactions", "Transactions group several operations so they succeed or fail together. The ACID properties, atomicity, consistency, isolation and durability, guarantee that a bank transfer, for example, never withdraws money from one account without depositing it in the other, even if the server crashes midway."),
    ("Normalisation", "Normalisation organises tables to reduce duplicated data. Instead of repeating a customer's address on every order, a normalised design stores it once in a customers table and refers to it by an identifier. This prevents inconsistencies when the address changes, at the cost of needing joins to reassemble the data."),
    ("NoSQL stores", "NoSQL databases relax the fixed table schema of relational systems. Document stores keep flexible JSON-like records, key-value stores offer extremely fast lookups by a single key, and wide-column stores spread data across many machines. Many trade strict consistency for availability and horizontal scaling."),
], [
    ("why do writes slow down when I add more lookup structures to a table", [1]),
    ("guarantee that cash isn't lost if the machine dies halfway through a payment between accounts", [2]),
])

C("compilers and runtimes", [
    ("Compilers versus interpreters", "A compiler translates an entire program into machine code or another lower-level form before it runs, while an interpreter executes the source more or less line by line. Compiled programs usually run faster, but interpreters make it easier to experiment interactively and to run the same code on different platforms."),
    ("Just-in-time compilation", "Just-in-time compilers combine both approaches. The program starts in an interpreter or a quick baseline compiler, and the runtime watches which functions are executed most often. Those hot sections are then compiled into optimised machine code while the program is running, using information observed about actual data types."),
    ("Garbage collection", "Garbage collection automatically reclaims memory that a program can no longer reach. A tracing collector starts from variables in use, marks every object it can reach, and frees the rest. This prevents many memory bugs but can introduce pauses, which modern collectors shorten by working incrementally or concurrently."),
    ("Static and dynamic typing", "In statically typed languages, variable types are checked before the program runs, so many mistakes are caught at compile time. Dynamically typed languages check types only during execution, which makes code shorter and more flexible but means some errors surface only when a particular line is reached."),
    ("Parsing", "The front end of a compiler first splits source text into tokens, such as keywords, numbers and operators, and then a parser arranges those tokens into a syntax tree according to the language grammar. Later stages analyse and transform this tree before generating code."),
], [
    ("how does a language runtime speed up frequently called routines during execution", [1]),
])

C("networking", [
    ("TCP", "The Transmission Control Protocol provides reliable, ordered delivery of data over the internet. It numbers each segment, waits for acknowledgements and retransmits anything that goes missing. It also slows its sending rate when it detects congestion, so that many connections can share a link fairly."),
    ("UDP", "UDP sends individual datagrams without establishing a connection, confirming delivery or guaranteeing order. The lack of retransmission makes it lighter and lower in latency than TCP, which suits live voice calls, online games and video streaming, where a late packet is useless anyway."),
    ("DNS", "The Domain Name System translates human-readable names such as example.org into numerical IP addresses. A resolver queries a hierarchy of servers, starting from the root, then the top-level domain, then the domain's own authoritative server, and caches answers for a period set by the record's time-to-live."),
    ("IPv6", "IPv4 addresses are 32 bits long, allowing about 4.3 billion combinations, which proved too few for the growth of connected devices. IPv6 uses 128-bit addresses, an almost inexhaustible supply. Adoption has been gradual, so most networks run both protocols side by side."),
    ("Network address translation", "Network address translation lets many devices on a home or office network share a single public IP address. The router rewrites the source address of outgoing packets and keeps a table so replies reach the right device. NAT helped delay IPv4 exhaustion but complicates direct peer-to-peer connections."),
], [
    ("Why do multiplayer games and internet telephony prefer a protocol that never resends lost packets?", [1]),
    ("how many distinct numbers did the older internet addressing scheme permit", [3]),
])

C("batteries", [
    ("How lithium-ion batteries work", "In a lithium-ion battery, lithium ions move from the negative electrode, usually graphite, through an electrolyte to the positive electrode during discharge, while electrons flow through the external circuit. Charging pushes the ions back. Because lithium is very light, these cells store more energy per kilogram than older chemistries."),
    ("Battery degradation", "Lithium-ion cells gradually lose capacity as side reactions consume lithium and build up films on the electrodes. Heat accelerates this ageing, as does keeping the battery at full charge for long periods. Many phones and electric cars therefore limit charging to around 80 or 90 percent by default."),
    ("Thermal runaway", "If a lithium-ion cell is punctured, overcharged or overheated, internal reactions can release heat faster than it escapes, which drives further reactions. This thermal runaway can cause fire and can spread to neighbouring cells. Battery packs use separators, sensors and cooling systems to prevent it."),
    ("LFP cells", "Lithium iron phosphate cathodes store somewhat less energy than nickel-rich designs but avoid cobalt, cost less and tolerate thousands of charge cycles. They are also more resistant to overheating. These features have made them popular for home storage and for standard-range electric cars."),
    ("Solid-state batteries", "Solid-state batteries replace the flammable liquid electrolyte with a solid material such as a ceramic or polymer. Developers hope this will allow lithium-metal anodes, which could raise energy density substantially and improve safety, but manufacturing thin, defect-free solid layers at scale remains difficult."),
], [
    ("Why does my handset stop filling up at 80%?", [1]),
])

C("solar energy", [
    ("Photovoltaic cells", "A photovoltaic cell converts sunlight directly into electricity. Photons striking a silicon wafer free electrons, and a junction between two differently doped layers pushes those electrons in one direction, creating a current. Commercial silicon panels typically convert around 20 to 23 percent of incoming sunlight."),
    ("Concentrated solar power", "Concentrated solar power plants use mirrors to focus sunlight onto a receiver, heating a fluid that drives a steam turbine. Because heat can be stored in tanks of molten salt, some plants continue generating electricity for hours after sunset, something ordinary panels cannot do without batteries."),
    ("Panel orientation", "Fixed solar panels produce most energy when they face the equator and are tilted at an angle close to the site's latitude. Single-axis trackers that follow the sun from east to west can increase annual output by roughly 15 to 25 percent, though they add cost and maintenance."),
    ("Falling solar costs", "The price of solar modules fell by around ninety percent between 2010 and 2020, driven by mass manufacturing, larger factories and steady efficiency improvements. In many sunny regions, new solar farms now produce electricity more cheaply than new coal or gas plants."),
    ("Soiling and temperature", "Dust, pollen and bird droppings reduce panel output, a problem called soiling, which can cost desert installations several percent a month without cleaning. Heat also hurts: silicon cells lose roughly 0.4 percent of their efficiency for every degree Celsius above 25."),
], [
    ("How can a sun-powered station keep supplying the grid after dark without batteries?", [1]),
])

C("glaciers", [
    ("How glaciers form", "Glaciers form where more snow falls in winter than melts in summer. Over years, the accumulated snow is compressed into granular firn and then into dense glacial ice. Once the ice is thick enough, usually several tens of metres, it begins to deform and flow downhill under its own weight."),
    ("Glacial erosion", "Moving glaciers scrape and pluck rock from the ground beneath them, carving U-shaped valleys, sharp ridges called aretes, and bowl-shaped hollows called cirques. Rocks frozen into the base act like sandpaper, leaving parallel scratches that reveal the direction the ice once moved."),
    ("Moraines", "Moraines are ridges of unsorted rock debris, from fine clay to large boulders, deposited by glaciers. A terminal moraine marks the farthest point a glacier reached, while lateral moraines form along its sides. Many lakes in formerly glaciated regions are dammed by such ridges."),
    ("Glacier retreat", "Most mountain glaciers worldwide have shrunk since the late nineteenth century. Retreating glaciers temporarily increase river flow as they melt, but as they shrink further, summer water supply falls, affecting communities that depend on meltwater for irrigation and hydropower."),
    ("Icebergs and calving", "When a glacier reaches the sea, chunks break off its front in a process called calving, forming icebergs. Because glacial ice is only slightly less dense than seawater, about nine-tenths of an iceberg's volume lies below the surface, which makes them hazardous to shipping."),
], [
    ("what portion of a floating chunk of ice is hidden beneath the waves", [4]),
])

C("deserts", [
    ("What defines a desert", "A desert is defined by low precipitation, typically less than 250 millimetres a year, rather than by heat. By this definition Antarctica is the largest desert on Earth. Many deserts also experience large daily temperature swings because dry air and clear skies let heat escape quickly at night."),
    ("Rain shadow deserts", "Some deserts lie in the rain shadow of mountain ranges. Moist air rises over the mountains, cools and drops its rain on the windward side, then descends warm and dry on the far side. This effect explains arid basins on the leeward side of many coastal ranges."),
    ("Sand dunes", "Only about a fifth of the world's deserts are covered by sand; most are rocky plains or gravel. Where sand does accumulate, wind shapes it into dunes. Crescent-shaped barchan dunes form where wind blows mostly from one direction and sand is limited, and they can migrate tens of metres a year."),
    ("Desert animals", "Desert animals have many strategies to save water. Kangaroo rats can survive without drinking, obtaining water from the metabolism of dry seeds, and produce highly concentrated urine. Many species are nocturnal, avoiding daytime heat by sheltering in burrows where temperature and humidity are more stable."),
    ("Fog deserts", "Along certain coasts, cold ocean currents cool the air so much that rain rarely falls, yet fog rolls inland almost daily. Beetles, lichens and specialised plants collect moisture from this fog, and some villages capture drinking water using large mesh nets stretched across hillsides."),
], [
    ("Is the frozen southern continent technically the biggest arid region on the planet?", [0]),
    ("How can a small rodent live without ever drinking?", [3]),
])

C("velmar river (fictional)", [
    ("Source of the Velmar", "The Velmar River rises from a chain of spring-fed tarns in the Oskren Highlands at an altitude of about 2,100 metres. It flows roughly 640 kilometres southeast before emptying into the Gulf of Tarsa, draining a basin slightly larger than 48,000 square kilometres."),
    ("The Velmar delta", "The Velmar delta is a fan of marshes, lagoons and sandbars covering nearly 900 square kilometres. Sediment carried from the highlands extends the coastline by several metres each year. The delta's reed beds shelter wintering flamingos and a rare freshwater turtle found nowhere else."),
    ("Dunmore Dam", "The Dunmore Dam, completed in 1974 on the middle Velmar, created a reservoir 52 kilometres long and supplies hydroelectric power to the regional capital, Carrowick. Because the reservoir traps sediment, downstream farmers reported a gradual loss of fertile silt that once arrived with spring floods."),
    ("Barge trade on the Velmar", "For centuries flat-bottomed barges carried grain, salt and timber along the lower Velmar between the market town of Halsby and the coast. River tolls collected at the narrow Iron Gorge funded the town walls of Halsby until the opening of a parallel railway in 1889 made the barge trade unprofitable."),
    ("Velmar floods", "The Velmar floods most often in late spring, when snowmelt from the Oskren Highlands coincides with heavy rain. The record flood of 1932 submerged half of Halsby's old quarter; marks carved into the stone of the town hall still show the water's height, nearly two metres above the street."),
], [
    ("Why did growers below the reservoir lose the rich mud deposits they used to get?", [2]),
    ("How was the defensive rampart of the riverside market town paid for?", [3]),
])

C("bird migration", [
    ("Magnetic navigation", "Many migratory birds can sense Earth's magnetic field. Experiments suggest that light-sensitive proteins in their eyes, called cryptochromes, may let them perceive magnetic direction, while iron-containing cells in the beak could detect field strength. Combined, these cues act like an internal compass and map."),
    ("The star compass", "Night-migrating songbirds can orient by the stars. In planetarium experiments, young indigo buntings learned to use the point around which the night sky rotates as a reference for north. When the projected sky was rotated around a different star, the birds shifted their chosen direction accordingly."),
    ("The bar-tailed godwit", "The bar-tailed godwit holds the record for the longest nonstop flight of any land bird, crossing the Pacific from Alaska to New Zealand in about eleven days without feeding or resting. Before departure it nearly doubles its body weight with fat and shrinks its digestive organs."),
    ("Stopover sites", "Most migrating shorebirds depend on a few stopover sites where they rest and refuel. Estuaries and mudflats along their routes provide abundant worms and shellfish. Loss of a single key stopover, for example to land reclamation, can cause population declines across an entire flyway."),
    ("Flying in a V", "Geese and other large birds often fly in a V formation. Each bird positions itself to catch the rising air from the wingtip vortex of the bird ahead, saving energy. Studies of ibises fitted with data loggers showed they even timed their wingbeats to make the best use of this updraft."),
], [
    ("which wader crosses an entire ocean for over a week without pausing to eat", [2]),
])

C("bees", [
    ("The waggle dance", "Honeybee foragers communicate the location of food through the waggle dance. On the vertical comb, the angle of the waggle run relative to straight up indicates the direction of the food relative to the sun, while the duration of the run encodes distance, roughly one second for each kilometre."),
    ("Colony structure", "A honeybee colony contains a single egg-laying queen, tens of thousands of sterile female workers and, in summer, a few hundred male drones. Workers change jobs as they age, typically cleaning cells and nursing larvae when young, then building comb and guarding, and finally foraging outside the hive."),
    ("Wild and solitary bees", "Most of the world's roughly twenty thousand bee species are not honeybees, and most live alone rather than in colonies. Many solitary bees nest in burrows in bare soil or hollow plant stems. Some, such as mason bees, pollinate fruit trees more efficiently per individual than honeybees do."),
    ("The Varroa mite", "The Varroa mite is a parasite that feeds on honeybee larvae and adults and spreads viruses, including one that deforms wings. Originally a pest of the Asian honeybee, it jumped to the European honeybee in the twentieth century and is now a leading cause of colony losses in most beekeeping regions."),
    ("Pollination and crops", "Around three-quarters of leading food crop types benefit to some degree from animal pollination, though staple grains such as wheat, rice and maize are wind-pollinated. Crops like almonds, blueberries and apples depend heavily on insects, and growers often rent hives during flowering."),
], [
    ("How does a returning forager tell hive-mates how far off the flowers are?", [0]),
    ("do cereal staples like rice need insects to set seed", [4]),
])

C("sleep", [
    ("Sleep stages", "A night's sleep cycles through stages roughly every ninety minutes. Deep slow-wave sleep dominates the early part of the night, while rapid eye movement sleep, when most vivid dreaming occurs, becomes longer toward morning. During REM sleep most skeletal muscles are temporarily paralysed."),
    ("The circadian rhythm", "The body's internal clock, located in a small region of the hypothalamus, runs on a cycle of roughly twenty-four hours. Light reaching the eyes, especially in the morning, resets it each day. In the evening, darkness allows the pineal gland to release melatonin, which signals that it is time to sleep."),
    ("Sleep and memory", "Studies show that sleep after learning helps consolidate new memories. During slow-wave sleep, the hippocampus appears to replay recent experiences, transferring them to longer-term storage in the cortex. Students who sleep after studying typically recall more than those who stay awake for the same period."),
    ("Sleep apnea", "Obstructive sleep apnea occurs when the airway repeatedly collapses during sleep, briefly stopping breathing and fragmenting rest. Loud snoring and daytime sleepiness are common signs. A continuous positive airway pressure machine, which blows air through a mask to keep the airway open, is the standard treatment."),
    ("Teenage sleep", "During adolescence the timing of melatonin release shifts later, so teenagers naturally feel sleepy later at night and struggle to wake early. Several school districts that moved start times later reported that students slept longer and attendance improved."),
], [
    ("Why do adolescents find it so hard to get up for early lessons?", [4]),
])

C("the heart", [
    ("Chambers of the heart", "The human heart has four chambers. The right atrium and ventricle receive oxygen-poor blood from the body and pump it to the lungs, while the left side receives oxygenated blood from the lungs and pumps it to the rest of the body. The left ventricle's wall is the thickest because it works against the highest pressure."),
    ("Blood pressure", "Blood pressure is recorded as two numbers: systolic pressure, when the heart contracts, and diastolic pressure, when it relaxes between beats. A reading of 120 over 80 millimetres of mercury is often used as a reference for normal. Persistently high pressure strains arteries and raises the risk of stroke."),
    ("Heart attacks", "A heart attack occurs when a coronary artery becomes blocked, usually by a blood clot forming on a ruptured fatty plaque, and part of the heart muscle is starved of oxygen. Rapid treatment to reopen the artery, with clot-dissolving drugs or a stent, limits permanent damage."),
    ("Atrial fibrillation", "In atrial fibrillation the upper chambers quiver chaotically instead of contracting in rhythm, producing an irregular pulse. Blood can pool and form clots in the atria, which may travel to the brain, so many patients are prescribed anticoagulants to reduce the risk of stroke."),
    ("The natural pacemaker", "The heartbeat starts in the sinoatrial node, a cluster of specialised cells in the right atrium that fire electrical impulses spontaneously. The signal spreads across the atria, pauses briefly at the atrioventricular node to let the ventricles fill, and then travels rapidly through the ventricles."),
], [
    ("why is the muscle of the lower left pumping compartment so thick", [0]),
    ("why are people with an erratic pulse given blood thinners", [3]),
])

C("diabetes", [
    ("Type 1 diabetes", "Type 1 diabetes is an autoimmune disease in which the immune system destroys the insulin-producing beta cells of the pancreas. It often begins in childhood or early adulthood, and people with it need insulin by injection or pump for life, because the body can no longer make its own."),
    ("Type 2 diabetes", "In type 2 diabetes, the body's cells respond poorly to insulin and the pancreas gradually cannot compensate. It is strongly associated with excess weight and physical inactivity. Early stages can often be managed with diet, exercise and oral medicines such as metformin, although some patients later need insulin."),
    ("The HbA1c test", "The HbA1c test measures the share of haemoglobin in red blood cells that has glucose attached. Because red cells live about three months, the result reflects average blood sugar over that period rather than a single moment, making it useful for diagnosis and monitoring."),
    ("Hypoglycaemia", "Low blood sugar, or hypoglycaemia, can occur when someone taking insulin skips a meal or exercises more than usual. Symptoms include shaking, sweating, confusion and, in severe cases, loss of consciousness. It is treated quickly with fast-acting sugar such as glucose tablets or fruit juice."),
    ("Continuous glucose monitors", "A continuous glucose monitor uses a small sensor inserted under the skin to measure sugar levels in tissue fluid every few minutes. Readings are sent to a phone or receiver, which can sound alarms for highs and lows, reducing the need for fingerstick blood tests."),
], [
    ("what should you do if someone on insulin turns trembly and clammy after missing lunch", [3]),
])

C("ancient egypt", [
    ("The Nile flood", "Ancient Egyptian agriculture depended on the annual flooding of the Nile, caused by summer rains in the Ethiopian highlands. The floodwaters deposited a layer of dark, fertile silt on the fields. Egyptians called their land Kemet, the black land, after this soil, in contrast to the red desert beyond."),
    ("Building the pyramids", "The Great Pyramid of Giza was built around 2560 BCE for the pharaoh Khufu and remained the tallest human-made structure for nearly four thousand years. Evidence from workers' villages suggests it was built by paid, organised labour crews rather than slaves, who were fed bread, beer and meat."),
    ("Hieroglyphs", "Egyptian hieroglyphs combined signs representing sounds with signs representing ideas. The script could not be read for centuries until the Rosetta Stone, which carries the same decree in hieroglyphic, demotic and Greek, allowed Jean-Francois Champollion to decipher it in 1822."),
    ("Mummification", "Egyptian embalmers removed the internal organs, except usually the heart, and dried the body with natron, a natural salt, for about forty days. The body was then wrapped in linen bandages. Egyptians believed preserving the body allowed the soul to recognise and return to it in the afterlife."),
    ("Papyrus", "Papyrus was made from the pith of a reed growing in the Nile marshes. Strips were laid in two perpendicular layers, pressed and dried, forming a smooth writing surface. Sheets were glued into rolls, and papyrus remained a major writing material around the Mediterranean for thousands of years."),
], [
    ("How did scholars finally learn to read the ancient picture-writing of the pharaohs?", [2]),
    ("were the great tombs at Giza raised by enslaved people", [1]),
])

C("printing", [
    ("Gutenberg's press", "Around 1450 in Mainz, Johannes Gutenberg combined movable metal type, an oil-based ink and a screw press adapted from wine-making. His Bible, completed about 1455, showed that printed books could match the quality of manuscripts. Roughly 180 copies were printed, and fewer than fifty survive."),
    ("Earlier movable type", "Movable type was invented in China in the eleventh century by Bi Sheng, who used characters made of baked clay. Later Korean printers cast type in bronze, and the oldest surviving book printed with movable metal type, the Jikji, was produced in Korea in 1377."),
    ("The spread of printing", "Within fifty years of Gutenberg's invention, printing presses operated in more than 250 European towns, and millions of books had been produced. The fall in the price of books helped spread literacy, scientific ideas and religious pamphlets during the Reformation."),
    ("Typefaces", "Early printers modelled their type on handwriting. Gothic blackletter dominated in Germany, while Italian printers favoured roman letters based on humanist script. Venetian printer Aldus Manutius introduced italic type around 1500, partly to fit more text into small, affordable pocket editions."),
    ("Steam presses", "In the nineteenth century, steam-powered cylinder presses replaced hand-operated presses. A hand press could make a few hundred impressions an hour, while early steam presses at a London newspaper produced over a thousand sheets an hour, making cheap daily newspapers possible."),
], [
    ("Why was slanted lettering introduced for pocket-sized volumes?", [3]),
])

C("railways", [
    ("Early steam railways", "The Liverpool and Manchester Railway, opened in 1830, was the first intercity line to rely entirely on steam locomotives and to run scheduled passenger services. Its success, and the performance of Stephenson's Rocket at trials the previous year, triggered a boom in railway construction across Britain."),
    ("Track gauge", "Standard gauge, 1,435 millimetres between the rails, is used by a majority of the world's railways. Some countries adopted broader or narrower gauges, and where two gauges meet, passengers once had to change trains and freight had to be reloaded; some modern trains now have adjustable wheelsets."),
    ("Railway time", "Before railways, towns kept their own local time based on the sun. Train timetables made this confusing, so British railways adopted a single standard time in the 1840s. North American railroads introduced standard time zones in 1883, and governments later made them official."),
    ("High-speed rail", "Japan opened the first high-speed line, the Tokaido Shinkansen, in 1964, linking Tokyo and Osaka at speeds above 200 kilometres per hour. High-speed trains use dedicated tracks with gentle curves, and for journeys of a few hundred kilometres they often compete successfully with airlines."),
    ("Rack railways", "On steep mountain lines, ordinary wheels would slip, so rack railways use a toothed rail laid between the running rails. A cogwheel on the locomotive engages the rack, allowing trains to climb gradients of more than twenty percent."),
], [
    ("Why did clocks across a whole country get synchronised in the nineteenth century?", [2]),
    ("how do locomotives climb very steep slopes without their wheels losing grip", [4]),
])

C("exoplanets", [
    ("The transit method", "The transit method detects a planet when it passes in front of its star, causing a tiny, regular dip in brightness. The depth of the dip reveals the planet's size relative to the star, and the interval between dips gives its orbital period. Space telescopes have found thousands of planets this way."),
    ("Radial velocity", "As a planet orbits, it tugs its star back and forth slightly. Spectrographs detect this wobble as small shifts in the star's light toward blue and then red. The size of the shift indicates the planet's minimum mass, complementing the transit method, which gives its radius."),
    ("The habitable zone", "The habitable zone is the range of distances from a star where a planet with a suitable atmosphere could keep liquid water on its surface. For dim red dwarf stars it lies very close in, so planets there orbit in days and may be tidally locked, with one side always facing the star."),
    ("Hot Jupiters", "Hot Jupiters are gas giants that orbit extremely close to their stars, completing an orbit in just a few days and reaching temperatures above a thousand degrees. They were among the first exoplanets discovered, surprising astronomers, and are thought to have formed farther out before migrating inward."),
    ("Exoplanet atmospheres", "When a planet transits, some starlight passes through its atmosphere. Molecules such as water vapour and carbon dioxide absorb specific wavelengths, leaving fingerprints in the spectrum. Infrared space telescopes have used this technique to detect several molecules in the atmospheres of distant worlds."),
], [
    ("How do astronomers work out how heavy a world circling another sun is?", [1]),
])

C("the moon", [
    ("Origin of the Moon", "The leading explanation for the Moon's origin is the giant-impact hypothesis: early in the solar system's history, a Mars-sized body collided with the young Earth, and debris from the collision coalesced into the Moon. Similarities between lunar and terrestrial rock compositions support this idea."),
    ("Tides", "The Moon's gravity pulls on Earth's oceans, raising two bulges: one facing the Moon and one on the opposite side. As Earth rotates, most coasts experience two high tides a day. When the Sun and Moon align, at new and full moon, their combined pull produces larger spring tides."),
    ("Synchronous rotation", "The Moon rotates once on its axis in the same time it takes to orbit Earth, so the same hemisphere always faces us. This synchronous rotation resulted from tidal forces slowing the Moon's spin over time. The far side was first photographed by a Soviet probe in 1959."),
    ("Apollo samples", "The six Apollo landing missions brought back about 382 kilograms of lunar rock and soil between 1969 and 1972. Analysis of these samples showed the Moon's surface is around 4.5 billion years old in places and that it lacks water-bearing minerals common on Earth."),
    ("Lunar water ice", "Craters near the lunar poles contain regions that never receive sunlight, where temperatures remain below minus 200 degrees Celsius. Orbiting instruments have detected signs of water ice in these permanently shadowed areas, which future missions hope to use for drinking water and rocket fuel."),
], [
    ("why do we only ever see one face of our natural satellite", [2]),
    ("where might astronauts find frozen H2O up there", [4]),
])

C("earthquakes", [
    ("Plate boundaries", "Most earthquakes occur along the boundaries of tectonic plates, where stress builds as plates grind past, collide with or pull away from each other. When the accumulated strain exceeds the strength of the rocks, the fault slips suddenly, releasing energy as seismic waves."),
    ("Magnitude", "Earthquake magnitude is measured on a logarithmic scale. Each whole-number increase corresponds to about ten times greater ground motion and roughly thirty-two times more energy released. The moment magnitude scale has largely replaced the older Richter scale for large events."),
    ("P and S waves", "Earthquakes produce primary waves, which compress rock and travel fastest, and secondary waves, which shake it sideways and arrive later. Because S-waves cannot pass through liquid, their absence on the far side of the planet revealed that Earth's outer core is molten."),
    ("Early warning systems", "Earthquake early-warning systems detect the first, weaker waves near the source and send alerts before the stronger shaking arrives elsewhere. The warning may be only a few seconds to a minute, but it is enough to slow trains, stop elevators and let people take cover."),
    ("Liquefaction", "During strong shaking, loose, waterlogged sand can lose its strength and behave like a liquid, a process called liquefaction. Buildings may tilt or sink, and buried pipes can float upward. Reclaimed land and river deposits are particularly vulnerable."),
], [
    ("How did scientists learn that the layer around Earth's centre is fluid?", [2]),
])

C("hurricanes", [
    ("How tropical cyclones form", "Tropical cyclones form over ocean water warmer than about 26 degrees Celsius. Warm, moist air rises, condenses and releases heat, which fuels further rising air and lowers surface pressure. The rotation of the Earth gives the system its spin, which is why they rarely form within five degrees of the equator."),
    ("Names by region", "The same kind of storm is called a hurricane in the Atlantic and northeast Pacific, a typhoon in the northwest Pacific, and a cyclone in the Indian Ocean and South Pacific. Regional weather agencies assign names from rotating lists and retire those of particularly destructive storms."),
    ("Storm surge", "Storm surge, the rise in sea level pushed ashore by a cyclone's winds and low pressure, usually causes more deaths than the wind itself. Shallow coastal shelves and funnel-shaped bays amplify the surge, which can exceed five metres in the most intense storms."),
    ("The eye", "The eye of a mature hurricane is a calm, often clear area tens of kilometres wide, where air sinks. It is surrounded by the eyewall, a ring of towering thunderstorms containing the strongest winds. People sometimes mistake the calm eye for the end of the storm."),
    ("The Saffir-Simpson scale", "The Saffir-Simpson scale ranks Atlantic hurricanes from category 1 to 5 according to their sustained wind speed. Category 5 storms have winds of at least 252 kilometres per hour. The scale does not account for rainfall or storm surge, which can make lower-category storms very deadly."),
], [
    ("why don't typhoons develop right on the equator", [0]),
    ("What usually takes more lives during a big tropical storm than the gales?", [2]),
])

C("genetics", [
    ("DNA structure", "DNA consists of two strands wound into a double helix, with a backbone of sugar and phosphate. The strands are held together by pairs of bases: adenine pairs with thymine, and cytosine with guanine. This complementary pairing allows each strand to serve as a template when DNA is copied."),
    ("CRISPR gene editing", "CRISPR-Cas9 is a gene-editing tool adapted from a bacterial defence system against viruses. A short guide RNA directs the Cas9 enzyme to a matching DNA sequence, where it cuts both strands. The cell's repair machinery then fixes the break, allowing scientists to disable a gene or insert new sequence."),
    ("Gene expression", "Although nearly every cell in the body carries the same DNA, different cells switch different genes on and off. Regulatory proteins called transcription factors bind near genes and control whether they are transcribed into RNA, which is why a liver cell and a neuron behave so differently."),
    ("Mutations", "A mutation is a change in DNA sequence. Many have no effect, some are harmful, and a few are beneficial. A single base substitution in the haemoglobin gene causes sickle cell disease, yet carrying one copy provides partial protection against malaria, explaining its frequency in some regions."),
    ("Epigenetics", "Epigenetic marks, such as methyl groups attached to DNA, change how genes are read without altering the sequence itself. Some marks respond to environment and diet, and experiments in mice have shown that certain patterns can persist across generations."),
], [
    ("How can one altered letter in a blood-protein gene shield people from a mosquito-borne illness?", [3]),
])

C("gut microbiome", [
    ("Gut bacteria", "The human gut hosts trillions of microbes, comparable in number to the body's own cells, representing hundreds of species. Most live in the large intestine, where they ferment dietary fibre that human enzymes cannot digest, producing short-chain fatty acids that nourish the cells lining the colon."),
    ("Birth and the microbiome", "Babies acquire their first microbes during birth and early feeding. Infants born vaginally are colonised by bacteria resembling their mother's vaginal and gut flora, while those delivered by caesarean section initially carry more skin-associated species. Breast milk contains sugars that specifically feed beneficial bifidobacteria."),
    ("Antibiotics and the gut", "A course of broad-spectrum antibiotics can sharply reduce the diversity of gut bacteria. Most communities recover within weeks, but some species may be lost for months. This disruption can allow Clostridioides difficile, a harmful bacterium, to overgrow and cause severe diarrhoea."),
    ("Faecal transplants", "Faecal microbiota transplantation introduces stool from a healthy donor into a patient's colon to restore a balanced microbial community. It is highly effective against recurrent C. difficile infection, curing most patients where repeated antibiotic treatment has failed."),
    ("Probiotics", "Probiotics are live microorganisms, commonly strains of Lactobacillus and Bifidobacterium, sold in supplements and fermented foods. Evidence for their benefits varies by strain and condition; some reduce antibiotic-associated diarrhoea, while claims for general wellbeing are often poorly supported."),
], [
    ("How do newborns delivered surgically differ in their first intestinal microbes?", [1]),
])

C("fermented vegetables", [
    ("Lacto-fermentation", "Lacto-fermentation preserves vegetables using salt and naturally present lactic acid bacteria. The salt draws water from the vegetables and suppresses spoilage organisms, while the bacteria convert sugars to lactic acid. As acidity rises, the food becomes inhospitable to most harmful microbes."),
    ("Sauerkraut", "Sauerkraut is made from finely shredded cabbage mixed with about two percent salt by weight and packed tightly so that it is submerged in its own brine. Fermented at room temperature for several weeks, it develops a sour taste. Traditional sailors carried it on long voyages as a source of vitamin C."),
    ("Kimchi", "Kimchi is a Korean dish of fermented vegetables, most often napa cabbage and radish, seasoned with chilli, garlic, ginger and often fish sauce. Families traditionally prepared large batches in late autumn, a custom called kimjang, and stored them in earthenware jars buried in the ground to keep an even temperature."),
    ("Vinegar pickles", "Not all pickles are fermented. Quick pickles are made by pouring hot vinegar brine over vegetables, so the acidity comes from the vinegar rather than bacteria. They are ready within hours or days, but lack the live cultures and complex flavours of fermented pickles."),
    ("Kahm yeast", "A white, wrinkled film sometimes appears on the surface of fermenting vegetables. This is usually kahm yeast, which is harmless though it can give off flavours; it can be skimmed off. Fuzzy, coloured mould is different and generally means the batch should be discarded."),
], [
    ("Why did seafarers bring salted cabbage on lengthy ocean journeys?", [1]),
    ("is the pale crinkly layer on top of my homemade pickles dangerous", [4]),
])

C("chocolate", [
    ("Cacao fermentation", "After harvest, cacao beans and their surrounding pulp are heaped or boxed and left to ferment for about five to seven days. Yeasts and bacteria consume the sugary pulp, and the heat and acids they produce kill the seed and trigger chemical changes that create chocolate flavour precursors. Unfermented beans taste astringent and bland."),
    ("Tempering chocolate", "Cocoa butter can crystallise in six different forms. Tempering, which involves carefully heating, cooling and reheating melted chocolate, encourages only the stable form V crystals. Properly tempered chocolate has a glossy surface, snaps cleanly and does not melt on the fingers as quickly."),
    ("Chocolate bloom", "Grey or white streaks on old chocolate are called bloom. Fat bloom occurs when cocoa butter migrates to the surface and recrystallises, often after temperature swings. Sugar bloom forms when moisture dissolves surface sugar that then recrystallises. Bloomed chocolate is safe to eat, although its texture suffers."),
    ("Cacao in history", "Cacao was domesticated in South America and later cultivated in Mesoamerica, where Maya and Aztec peoples prepared it as a bitter, frothy drink, sometimes flavoured with chilli. Cacao beans were valuable enough to be used as currency. Sweetened chocolate drinks became fashionable in European courts in the seventeenth century."),
    ("Dark, milk and white", "Dark chocolate contains cocoa solids, cocoa butter and sugar; milk chocolate adds milk powder and usually has a lower cocoa percentage. White chocolate contains cocoa butter but no cocoa solids, which is why it lacks the characteristic brown colour and the caffeine and theobromine of darker types."),
], [
    ("my old candy bar has a whitish coating, can I still eat it", [2]),
    ("Does the ivory-coloured variety of the confection have any stimulants in it?", [4]),
])

C("wine", [
    ("Terroir", "Terroir refers to the combined influence of soil, climate, slope and local tradition on the character of a wine. Vineyards on well-drained, sun-facing slopes often produce grapes with more concentrated flavour, because the vines struggle moderately for water and ripen more fully."),
    ("Red and white wine", "Red wine gets its colour from grape skins, which are left in contact with the juice during fermentation. Most grape juice is nearly colourless, so white wine can even be made from dark grapes if the skins are removed quickly. Skin contact also adds tannins that give red wine its drying texture."),
    ("The traditional method", "In the traditional method used for Champagne, still wine is bottled with added yeast and sugar, triggering a second fermentation that traps carbon dioxide. The bottles are gradually turned and tilted so that dead yeast settles in the neck, where it is frozen and expelled before corking."),
    ("Phylloxera", "In the late nineteenth century a tiny aphid-like insect, phylloxera, arrived from North America and destroyed a large share of Europe's vineyards by attacking vine roots. The eventual solution was grafting European vines onto resistant American rootstocks, a practice still used in most vineyards."),
    ("Cork taint", "Musty, damp-cardboard smells in wine are usually caused by a compound called TCA, which can form in natural corks. A corked wine is not harmful but is unpleasant to drink. Concern about cork taint encouraged some producers to adopt screw caps and synthetic closures."),
], [
    ("What rescued the continent's grape growers from the root-eating pest?", [3]),
])

C("chess", [
    ("Chess openings", "The opening phase of a chess game aims to develop pieces quickly, control the centre and bring the king to safety by castling. Well-known openings such as the Sicilian Defence and the Queen's Gambit have been analysed many moves deep, and strong players memorise extensive lines."),
    ("Endgames", "In the endgame, with few pieces left, the king becomes an active fighting piece. Certain positions are known theoretical wins or draws; for example, king and rook against king is always a win, while king and a single knight against king cannot force checkmate."),
    ("Computer chess", "In 1997 IBM's Deep Blue defeated world champion Garry Kasparov in a six-game match, the first time a computer beat a reigning champion under standard tournament conditions. Modern engines running on ordinary laptops play far stronger than any human."),
    ("Time controls", "Competitive chess uses clocks that limit each player's thinking time. Classical games may last several hours, rapid games give each player between ten and sixty minutes, and blitz gives less than ten. Many events add a small increment of seconds after each move."),
    ("Elo ratings", "The Elo rating system estimates a player's strength from results against rated opponents. Beating a higher-rated player earns more points than beating a weaker one. A difference of 400 points implies the stronger player is expected to score about ninety percent."),
], [
    ("Can a lone horse plus monarch deliver mate against a bare monarch?", [1]),
    ("when did a machine first defeat the title holder at the board", [2]),
])

C("basketball", [
    ("Invention of basketball", "Basketball was invented in 1891 by James Naismith, a physical education teacher in Springfield, Massachusetts, who needed an indoor game for the winter. The first baskets were peach baskets nailed to a balcony, and someone had to retrieve the ball after each score."),
    ("The shot clock", "The professional shot clock was introduced in 1954 to stop teams from stalling once they had a lead. A team must attempt a shot that hits the rim within a set time, twenty-four seconds in major professional leagues. Scoring rose sharply in the first season after its adoption."),
    ("The three-point line", "The three-point shot rewards long-range shooting with an extra point. Analytics showed that three-point attempts yield more points per shot on average than mid-range jumpers, leading teams to take far more of them and reshaping the modern game around spacing."),
    ("Zone defence", "In a zone defence, each player guards an area of the court rather than a specific opponent. Zones can protect the basket against strong drivers and hide weaker defenders, but they are vulnerable to good outside shooting and quick ball movement."),
    ("Fouls", "Players who commit a personal foul against a shooter usually award free throws to the opponent. Accumulating too many personal fouls, five or six depending on the league, results in disqualification from the game, so coaches often rest players in early foul trouble."),
], [
    ("Why did squads stop sitting on the ball to protect a lead in the mid-1950s?", [1]),
])

C("cycling", [
    ("Drafting", "Riding closely behind another cyclist reduces air resistance substantially, saving up to about a third of the effort at racing speeds. This is why professional riders form packs called pelotons and why breakaways, which lack shelter, often get caught before the finish."),
    ("Grand Tours", "The three Grand Tours, held in France, Italy and Spain, are stage races lasting about three weeks. The overall winner is the rider with the lowest cumulative time. Additional competitions reward the best climber, the most consistent sprinter and the best young rider."),
    ("Gearing", "Bicycle gearing trades pedalling force for speed. A small front chainring combined with a large rear sprocket makes climbing easier because each pedal turn moves the bike a shorter distance. Modern road bikes commonly offer twenty-two or twenty-four gear combinations."),
    ("Tyre pressure", "Riders once believed harder tyres were always faster. Testing on real roads showed that slightly lower pressures often roll faster on rough surfaces, because the tyre absorbs vibrations instead of bouncing the bike and rider upward, which wastes energy."),
    ("The safety bicycle", "The safety bicycle of the 1880s, with two wheels of similar size and a chain drive to the rear wheel, replaced the high-wheeled penny-farthing. It was easier to mount and much less likely to throw riders head first, and combined with pneumatic tyres it created a cycling craze."),
], [
    ("Are rock-hard tires really quicker on bumpy tarmac?", [3]),
    ("why do racers tuck in right behind a teammate's back wheel", [0]),
])

C("criminal procedure", [
    ("Presumption of innocence", "In most legal systems, a person accused of a crime is presumed innocent until proven guilty. The prosecution bears the burden of proof and, in criminal trials, must establish guilt beyond reasonable doubt, a higher standard than the balance of probabilities used in civil cases."),
    ("The right to silence", "Suspects generally have the right to remain silent and not incriminate themselves. In the United States, police must warn people in custody of this right and of their right to a lawyer before questioning; statements obtained without such warnings may be excluded from evidence."),
    ("Search warrants", "A search warrant is a court order authorising police to search a specified place for specified items. To obtain one, officers must typically show a judge that there is probable cause to believe evidence of a crime will be found there. Exceptions exist for emergencies."),
    ("Plea bargaining", "In a plea bargain, the defendant agrees to plead guilty, often to a lesser charge, in exchange for a lighter sentence or dropped charges. The practice resolves the large majority of criminal cases in some countries, saving court time but raising concerns that innocent people may plead guilty to avoid risk."),
    ("Double jeopardy", "The rule against double jeopardy prevents a person from being tried twice for the same offence after an acquittal or conviction. Some jurisdictions have introduced narrow exceptions allowing a retrial when compelling new evidence, such as DNA, emerges in serious cases."),
], [
    ("Can someone found not guilty be put on trial again if fresh genetic proof turns up?", [4]),
    ("how certain must a jury be to convict, compared with a lawsuit between private parties", [0]),
])

C("tenancy law", [
    ("Security deposits", "Many jurisdictions cap the security deposit a landlord may demand, often at one or two months' rent, and require it to be held in a protected scheme. At the end of the tenancy, the landlord may deduct only for unpaid rent or damage beyond normal wear and tear."),
    ("Repairs", "Landlords are generally responsible for keeping the structure, heating, plumbing and electrical installations in good repair. Tenants must report problems promptly and take reasonable care of the property, and they are usually liable for damage caused by their own negligence."),
    ("Notice and eviction", "A landlord normally cannot evict a tenant without following a legal process, which begins with written notice and, if the tenant does not leave, a court order. Changing the locks or removing a tenant's belongings without a court order is unlawful in most places."),
    ("Rent increases", "For periodic tenancies, rent increases usually require advance written notice, and many places limit them to once a year. Some cities with rent stabilisation rules tie permitted increases to inflation or a set percentage. Tenants who consider an increase excessive can often ask a housing tribunal to assess whether it matches local market rents."),
    ("Quiet enjoyment", "Tenants have a right to quiet enjoyment, meaning they may use the home without unreasonable interference. A landlord usually must give advance notice, often twenty-four hours, before entering, except in emergencies such as a burst pipe or fire."),
], [
    ("Is the owner of my flat allowed to just swap the door keys to force me out?", [2]),
])

C("labour markets", [
    ("Measuring unemployment", "The unemployment rate counts people without a job who are available for work and have actively looked for one recently, as a share of the labour force. People who have given up searching are not counted as unemployed, which can make the rate look lower during long downturns."),
    ("Types of unemployment", "Economists distinguish frictional unemployment, the short spells as people move between jobs; structural unemployment, when workers' skills or location do not match available jobs; and cyclical unemployment, which rises during recessions as demand for goods and labour falls."),
    ("Minimum wage", "Minimum wage laws set a floor on hourly pay. Simple models predict that a floor above the market wage reduces employment, but many empirical studies of moderate increases have found small or negligible job losses, possibly because employers have some power to set wages."),
    ("Labour force participation", "The labour force participation rate is the share of working-age people who are either employed or looking for work. It is affected by ageing populations, school enrolment and childcare availability; in many countries women's participation rose sharply during the second half of the twentieth century."),
    ("The Phillips curve", "The Phillips curve describes an observed inverse relationship between unemployment and inflation: when joblessness is low, wages and prices tend to rise faster. The relationship proved unstable in the 1970s, when high inflation and high unemployment occurred together, a combination called stagflation."),
], [
    ("why can the jobless figure improve when discouraged people simply stop searching", [0]),
])

C("housing market", [
    ("Mortgage basics", "A mortgage is a loan secured against a property, usually repaid in monthly instalments over twenty to thirty years. If the borrower fails to pay, the lender can repossess the home. Fixed-rate mortgages keep the interest rate constant for a set period, while variable-rate loans follow a benchmark rate."),
    ("Price-to-income ratio", "Analysts often judge housing affordability by the ratio of median house prices to median household income. In many large cities the ratio has climbed above eight or ten, compared with roughly three in earlier decades, making it harder for first-time buyers to save a deposit."),
    ("Supply constraints", "Where zoning rules limit building height or density, new housing supply responds slowly to rising demand, so prices rise instead. Studies comparing cities find that those with stricter land-use regulation tend to have higher prices relative to construction costs."),
    ("Renting versus buying", "Whether renting or buying is cheaper depends on interest rates, expected price growth, maintenance costs and how long a person stays. Transaction costs such as taxes and agent fees mean buying usually makes financial sense only for people who remain in one place for several years."),
    ("Housing bubbles", "A housing bubble occurs when prices rise far beyond what incomes and rents justify, driven by expectations of further gains and easy credit. When the bubble bursts, falling prices can leave owners owing more than their homes are worth, a situation known as negative equity."),
], [
    ("how do planning limits on tall apartment blocks affect what homes cost", [2]),
])

C("cryptography", [
    ("Symmetric encryption", "Symmetric encryption uses the same secret key to encrypt and decrypt data. Algorithms such as AES are very fast and are used to protect files, disks and network traffic. The main difficulty is distributing the shared key securely to everyone who needs it."),
    ("Public-key cryptography", "Public-key cryptography uses a pair of mathematically linked keys. Anyone can encrypt a message with the public key, but only the holder of the private key can decrypt it. Systems such as RSA rely on the difficulty of factoring the product of two very large prime numbers."),
    ("Hash functions", "A cryptographic hash function turns any input into a fixed-length fingerprint. Changing a single character of the input changes the output completely, and it should be infeasible to find two inputs with the same hash. Hashes are used to verify downloads and to store passwords safely."),
    ("Password salting", "Storing plain password hashes is risky, because attackers can precompute hashes of common passwords. Adding a unique random value, called a salt, to each password before hashing defeats such tables. Deliberately slow algorithms such as bcrypt or Argon2 further hinder guessing."),
    ("The quantum threat", "A sufficiently large quantum computer running Shor's algorithm could break widely used public-key systems like RSA and elliptic-curve cryptography. Standards bodies have therefore selected new post-quantum algorithms based on mathematical problems, such as those involving lattices, that are believed to resist quantum attacks."),
], [
    ("why mix a random string into each user's login secret before storing its digest", [3]),
    ("what maths problem makes RSA hard to break", [1]),
])

C("machine learning", [
    ("Overfitting", "A model overfits when it learns noise and peculiarities of its training data rather than general patterns, so it performs well on training examples but poorly on new ones. Common remedies include collecting more data, simplifying the model, regularisation and stopping training early based on a validation set."),
    ("Gradient descent", "Most neural networks are trained by gradient descent. The algorithm computes how the loss would change with small adjustments to each parameter and nudges all parameters in the direction that reduces the loss. The learning rate controls the step size; too large a rate makes training unstable."),
    ("Knowledge distillation", "Knowledge distillation trains a small student model to imitate a larger teacher model. Instead of learning only from hard labels, the student learns from the teacher's output scores, which convey how similar the teacher considers different answers. The student is cheaper to run while keeping much of the accuracy."),
    ("Embeddings", "An embedding maps items such as words, sentences or images to vectors of numbers so that similar items lie close together. Search systems embed both queries and documents and retrieve documents whose vectors are nearest to the query, finding matches even when they share no words."),
    ("Cross-validation", "Cross-validation estimates how well a model will generalise by splitting the data into several folds. The model is trained on all but one fold and evaluated on the held-out fold, repeating so each fold is used once for evaluation, and the scores are averaged."),
], [
    ("training a compact network to mimic the soft predictions of a bigger one", [2]),
    ("How can a search engine surface relevant text that uses entirely different wording?", [3]),
])

C("semiconductors", [
    ("Doping silicon", "Pure silicon conducts electricity poorly. Adding tiny amounts of phosphorus provides extra electrons, producing n-type silicon, while boron creates positively charged gaps called holes, producing p-type silicon. Junctions between these regions are the basis of diodes and transistors."),
    ("Transistors", "A transistor acts as an electrically controlled switch. In the field-effect transistors used in modern chips, a voltage on the gate creates or removes a conducting channel between source and drain. Billions of these switches, turning on and off billions of times per second, carry out digital logic."),
    ("Photolithography", "Chip patterns are printed by photolithography: light shines through a mask onto a wafer coated with a light-sensitive resist, which is then developed and etched. The most advanced factories use extreme ultraviolet light with a wavelength of 13.5 nanometres to print the finest features."),
    ("Cleanrooms", "Semiconductor fabrication takes place in cleanrooms where the air is filtered to remove almost all particles, because a single speck of dust can ruin a chip. Workers wear full-body suits, and the most stringent areas contain fewer than ten small particles per cubic metre."),
    ("Moore's law", "In 1965 Gordon Moore observed that the number of components on an integrated circuit was doubling roughly every year, a rate he later revised to every two years. The trend held for decades, but shrinking transistors further has become increasingly difficult and expensive."),
], [
    ("which element gets added to the wafer material to supply surplus negative charge carriers", [0]),
])

C("ocean currents", [
    ("The Gulf Stream", "The Gulf Stream is a powerful, warm current that flows from the Gulf of Mexico along the eastern coast of North America before crossing the Atlantic. Its extension carries heat toward northwestern Europe, contributing to milder winters there than at similar latitudes in Canada."),
    ("Thermohaline circulation", "Besides wind-driven surface currents, the ocean has a slow, deep circulation driven by differences in temperature and salinity. In the North Atlantic, cold, salty water sinks and spreads south along the seabed. A single parcel of water may take around a thousand years to complete the global loop."),
    ("Upwelling", "Along some coasts, winds push surface water offshore, and cold water rises from below to replace it. This upwelling brings nutrients to the sunlit surface, feeding plankton and supporting some of the world's richest fisheries, such as the anchovy grounds off Peru."),
    ("El Nino", "During El Nino, trade winds across the tropical Pacific weaken and warm water spreads eastward toward South America. Upwelling off Peru weakens, fish catches drop, and rainfall patterns shift worldwide, bringing drought to parts of Australia and floods to parts of South America."),
    ("Garbage patches", "Circular current systems called gyres collect floating debris in their calm centres. The so-called Great Pacific Garbage Patch is not a solid island but a broad region with high concentrations of small plastic fragments, many too small to see from a boat."),
], [
    ("why are winters in Ireland and Britain gentler than in Labrador", [0]),
    ("Is the big trash zone in the Pacific a floating island you could stand on?", [4]),
])

C("rainforests", [
    ("Canopy layers", "Tropical rainforests are structured in layers. Emergent trees rise above a dense canopy that intercepts most sunlight, while the understorey and forest floor receive as little as two percent of the light. Many animals spend their entire lives in the canopy without touching the ground."),
    ("Nutrient-poor soils", "Despite lush vegetation, most rainforest soils are poor in nutrients. Heavy rain leaches minerals away, and nutrients are rapidly recycled from fallen leaves into living plants. When forest is cleared for farming, the soil often loses fertility within a few years."),
    ("Rainforests make rain", "Rainforests help create their own rain. Trees release huge amounts of water vapour through their leaves, and in the Amazon this moisture is carried westward and falls again as rain several times. Large-scale clearing could weaken this recycling and dry out parts of the forest."),
    ("Biodiversity", "Tropical rainforests cover a small fraction of Earth's land yet are thought to contain more than half of its terrestrial species. A single hectare can hold several hundred tree species, and researchers fogging one tree canopy with insecticide have collected thousands of beetle species."),
    ("Epiphytes", "Epiphytes, such as orchids, bromeliads and ferns, grow on the branches of trees rather than in soil, gaining access to light high in the canopy. Some bromeliads hold pools of water in their leaf rosettes, where frogs lay eggs and insect larvae develop."),
], [
    ("why does cleared jungle ground become poor for crops so quickly", [1]),
])

C("whales", [
    ("Baleen and toothed whales", "Whales are divided into two groups. Baleen whales, including the blue and humpback whales, filter small prey such as krill through comb-like plates of keratin. Toothed whales, including sperm whales, dolphins and orcas, hunt individual prey such as fish and squid."),
    ("Echolocation", "Toothed whales find prey by echolocation. They produce rapid clicks, focused by a fatty organ in the forehead called the melon, and interpret the returning echoes to judge the size, distance and even internal structure of objects, allowing them to hunt in dark or murky water."),
    ("Humpback song", "Male humpback whales sing long, complex songs made of repeated themes, which can last up to twenty minutes and be repeated for hours. All males in a population sing roughly the same song, which gradually changes over a season, and new songs can spread across an ocean basin."),
    ("Blue whale size", "The blue whale is the largest animal known to have lived, reaching about thirty metres and weighing up to around 150 tonnes. Despite its size, it feeds almost entirely on krill, consuming several tonnes a day during the feeding season by gulping huge mouthfuls of water."),
    ("Whale evolution", "Whales evolved from land-dwelling, hoofed mammals about fifty million years ago. Fossils from Pakistan and Egypt show intermediate forms with legs gradually shrinking. Modern whales still carry small vestigial hip bones, and their closest living relatives are hippopotamuses."),
], [
    ("Which animal living on land today is the nearest kin of cetaceans?", [4]),
    ("how do dolphins locate fish in cloudy water using sound", [1]),
])

C("dinosaurs", [
    ("The end-Cretaceous extinction", "About sixty-six million years ago, a roughly ten-kilometre asteroid struck what is now the Yucatan Peninsula, creating the Chicxulub crater. The impact threw dust and sulphur aerosols into the atmosphere, blocking sunlight and collapsing food chains. All non-avian dinosaurs died out."),
    ("Birds are dinosaurs", "Birds are living dinosaurs. They descend from small, feathered theropods, the same group that includes Velociraptor. Shared features include hollow bones, wishbones and similar nesting behaviour, and many non-flying dinosaurs are now known to have had feathers."),
    ("Fossilisation", "Fossilisation is rare. An animal must usually be buried quickly in sediment, such as mud or volcanic ash, before scavengers and decay destroy it. Over time minerals in groundwater replace the original bone, turning it to stone while preserving its shape."),
    ("Sauropods", "Sauropods, such as Brachiosaurus and Argentinosaurus, were the largest land animals ever. Their long necks let them feed over a wide area without moving their enormous bodies, and air sacs connected to their lungs lightened their vertebrae, much as in modern birds."),
    ("Dating fossils", "Fossils themselves are rarely dated directly. Instead, scientists date volcanic ash layers above and below the fossil using radioactive isotopes with known decay rates, such as potassium decaying to argon, which gives an age range for the rock that contains the bones."),
], [
    ("How do researchers work out how old a skeleton is if they cannot measure the bones themselves?", [4]),
])

C("vision", [
    ("Rods and cones", "The retina contains two main types of light-sensitive cells. Rods are extremely sensitive and support vision in dim light but do not distinguish colour. Cones work in brighter light and come in three types, most sensitive to short, medium and long wavelengths, which together enable colour vision."),
    ("The blind spot", "Where the optic nerve leaves the eye, the retina has no photoreceptors, creating a blind spot in each eye's field of view. People rarely notice it because the two eyes' blind spots fall on different parts of the scene and the brain fills in the gap using surrounding information."),
    ("Myopia", "In short-sightedness, or myopia, the eyeball is slightly too long, so distant objects focus in front of the retina and appear blurred. Its prevalence has risen sharply among children in East Asian cities, and studies suggest that spending more time outdoors in daylight lowers the risk."),
    ("Colour blindness", "The most common form of colour blindness makes it hard to tell red from green, because one type of cone is missing or shifted in sensitivity. The genes involved lie on the X chromosome, so it affects roughly one in twelve men but only about one in two hundred women."),
    ("Cataracts", "A cataract is a clouding of the eye's lens, most often caused by ageing, which makes vision blurry and colours faded. Surgery to replace the cloudy lens with an artificial one is among the most frequently performed operations worldwide and usually takes less than half an hour."),
], [
    ("Why are males far more likely than females to mix up scarlet and emerald?", [3]),
    ("does playing outside protect kids from needing glasses to see far away", [2]),
])

C("vitamins", [
    ("Vitamin C and scurvy", "Scurvy, caused by a lack of vitamin C, killed many sailors on long voyages, producing bleeding gums, poor wound healing and fatigue. The body needs vitamin C to make collagen. In the eighteenth century, a naval surgeon's trial showed that citrus fruit cured the disease."),
    ("Vitamin D", "The skin produces vitamin D when exposed to ultraviolet B light from the sun. At high latitudes in winter, the sun is too low for significant production, so many people rely on diet or supplements. Vitamin D helps the intestine absorb calcium, and deficiency in children causes rickets."),
    ("Vitamin B12", "Vitamin B12 is found naturally almost only in animal foods, such as meat, fish, eggs and dairy, because it is made by bacteria rather than plants. People following a strict vegan diet are therefore advised to take supplements or fortified foods to avoid anaemia and nerve damage."),
    ("Fat-soluble vitamins", "Vitamins A, D, E and K dissolve in fat and can be stored in the liver and fatty tissue, so excessive supplement doses can accumulate to toxic levels. Vitamin K, besides its role in blood clotting, helps bind calcium into bone. Water-soluble vitamins, such as C and most B vitamins, are more easily excreted in urine."),
    ("Folate", "Folate, a B vitamin found in leafy greens and legumes, is essential for cell division. Adequate intake before conception and in early pregnancy greatly reduces the risk of neural tube defects such as spina bifida, which is why many countries fortify flour with folic acid."),
], [
    ("Which nutrient must people eating only plants take as a pill?", [2]),
    ("what micronutrients help keep the skeleton strong", [1, 3]),
])

C("bridges", [
    ("Suspension bridges", "Suspension bridges hang their deck from vertical cables attached to main cables draped between tall towers and anchored at each end. The design can span very long distances, more than two kilometres in the largest examples, because the steel cables carry loads efficiently in tension."),
    ("Cable-stayed bridges", "In a cable-stayed bridge, cables run directly from the towers to the deck, often in a fan or harp pattern. They need no massive anchorages at the ends, making them economical for medium spans of a few hundred metres to about one kilometre."),
    ("Arch bridges", "An arch bridge carries loads by compression, pushing outward and downward on its supports. Stone arches built by the Romans still stand, because masonry is very strong when compressed. The supports, called abutments, must resist the outward thrust or the arch spreads and collapses."),
    ("Tacoma Narrows", "The first Tacoma Narrows Bridge in Washington State collapsed in 1940, only four months after opening, when moderate winds caused its slender deck to twist violently. The failure led engineers to test bridge designs in wind tunnels and to build stiffer, more aerodynamic decks."),
    ("Expansion joints", "Bridges expand in summer heat and contract in cold. Expansion joints, often visible as metal teeth across the roadway, allow the deck to change length without cracking. A steel span several hundred metres long can change length by tens of centimetres between seasons."),
], [
    ("why do overpasses have steel comb-like gaps running across the lanes", [4]),
])

C("violins", [
    ("Stradivari", "Antonio Stradivari worked in Cremona, Italy, in the late seventeenth and early eighteenth centuries and made around a thousand instruments, of which roughly 650 survive. His violins are prized for their tone, though blind tests have found that many players cannot reliably distinguish them from fine modern instruments."),
    ("Violin construction", "A violin's top is usually carved from spruce and its back and sides from maple. Inside, a small wooden dowel called the sound post stands between top and back, transmitting vibrations, while a bass bar glued under the top supports it and strengthens the lower notes."),
    ("Bows", "Violin bows are traditionally strung with horsehair, and players rub rosin, a hardened tree resin, onto the hair so it grips the strings. Fine bows have long been made from pernambuco wood from Brazil, whose scarcity has prompted makers to experiment with carbon fibre."),
    ("Strings", "Early violin strings were made of sheep gut. In the twentieth century steel and synthetic core strings became common because they hold their tuning better in changing humidity. Gut strings remain popular among players of Baroque music for their warmer, softer sound."),
    ("The violin family", "The violin family includes the violin, viola, cello and double bass, although the double bass also borrows features from the older viol family. The viola is tuned a fifth lower than the violin, and the cello an octave below the viola."),
], [
    ("Can expert musicians actually tell a famous antique Cremonese fiddle from a new one by ear?", [0]),
])

C("linguistics", [
    ("Language families", "Most European and many South Asian languages belong to the Indo-European family, descended from a common ancestor spoken perhaps six thousand years ago. Linguists reconstruct such ancestors by comparing regular sound correspondences between related languages, such as Latin pater and English father."),
    ("Tone languages", "In tonal languages such as Mandarin, Yoruba and Vietnamese, the pitch pattern of a syllable changes its meaning. Mandarin has four main tones, so the same syllable spoken with rising or falling pitch can mean entirely different words."),
    ("Endangered languages", "Of the roughly seven thousand languages spoken today, linguists estimate that around forty percent are endangered, many with only a few elderly speakers. A language is most at risk when children stop learning it at home, and documentation projects record speakers before the knowledge is lost."),
    ("Child language acquisition", "Children acquire their native language rapidly without formal teaching. Infants can distinguish speech sounds from all languages at birth but, by around their first birthday, become tuned to the sounds of the language around them. Typical children produce two-word combinations by about two years old."),
    ("Pidgins and creoles", "When speakers without a common language need to communicate, for example in trade, they may develop a simplified pidgin. If children grow up speaking a pidgin as their first language, it typically expands into a full creole with a complete grammar."),
], [
    ("What happens when kids are raised speaking a simplified trade jargon as their mother tongue?", [4]),
])

C("calvessa islands (fictional)", [
    ("The Calvessa Islands", "The Calvessa Islands are a fictional archipelago of nineteen islands in a temperate northern sea, only seven of them inhabited. The largest, Brennock, covers about 310 square kilometres and holds the capital, Port Ailen, home to roughly half of the islands' twelve thousand residents."),
    ("Calvessa economy", "Fishing and salt-curing dominated the Calvessa economy until the 1960s, when a cooperative began farming mussels in sheltered inlets. Today, shellfish exports and summer tourism together provide most jobs, while a small wind farm on Brennock supplies about two-thirds of the islands' electricity."),
    ("The Calvessa ferry", "A single ferry links Port Ailen with the mainland port of Drisk, a crossing of about four hours. In winter storms sailings are often cancelled for days, so islanders keep stocks of flour and fuel, and the hospital on Brennock has an air-ambulance agreement with a mainland clinic."),
    ("Skarrow seabirds", "The cliffs of Skarrow, an uninhabited island in the Calvessa group, host one of the region's largest puffin colonies, estimated at forty thousand pairs. Because no rats or cats have ever reached Skarrow, ground-nesting seabirds breed there in densities unknown on the inhabited islands."),
    ("The Calvish dialect", "Islanders traditionally spoke Calvish, a local dialect with many loanwords from old Norse fishing vocabulary. By 1990 fewer than two hundred fluent speakers remained, and the island school began teaching it for one hour a week; a recent survey counted around six hundred learners."),
], [
    ("How does Brennock get its power, and what happens to patients when the boat cannot sail?", [1, 2]),
    ("why are burrow-nesting birds so abundant on the one Calvessa isle without people", [3]),
])

C("mountaineering", [
    ("Altitude sickness", "Acute mountain sickness commonly affects people who ascend quickly above about 2,500 metres, causing headache, nausea and poor sleep. The usual advice is to gain no more than 300 to 500 metres of sleeping altitude per day once above 3,000 metres, and to descend if symptoms worsen."),
    ("The death zone", "Above roughly 8,000 metres, the air holds about a third of the oxygen available at sea level, too little for humans to acclimatise to. Climbers in this so-called death zone deteriorate steadily, which is why most who climb the highest peaks use bottled oxygen and limit their time there."),
    ("First ascent of Everest", "Edmund Hillary and Tenzing Norgay reached the summit of Mount Everest on 29 May 1953 as part of a British expedition. They climbed via the South Col route from Nepal, which remains the most popular approach, while the northern route from Tibet was first climbed by a Chinese team in 1960."),
    ("The Sherpa people", "The Sherpa are an ethnic group from the high valleys of eastern Nepal. Generations at altitude have produced genetic adaptations that help their bodies use oxygen efficiently. Many Sherpa work as guides and porters, fixing ropes and carrying loads for commercial Himalayan expeditions."),
    ("Avalanches", "Most avalanches that catch climbers and skiers are slab avalanches, in which a cohesive layer of snow breaks away from a weaker layer beneath. They are most likely on slopes between thirty and forty-five degrees and often are triggered by the victims themselves."),
], [
    ("how much higher should you bed down each night to avoid getting ill on a trek", [0]),
])

C("aviation", [
    ("How wings lift", "An aircraft wing produces lift by deflecting air downward. Its shape and angle to the oncoming air create lower pressure above the wing and higher pressure below. Increasing the angle raises lift up to a point; beyond a critical angle, airflow separates from the upper surface and the wing stalls."),
    ("Jet engines", "A turbofan engine draws air in with a large fan. Most of this air bypasses the core and provides most of the thrust quietly and efficiently, while the remainder is compressed, mixed with fuel and burned, driving turbines that spin the fan and compressor."),
    ("Black boxes", "Airliners carry two flight recorders: a cockpit voice recorder and a flight data recorder that logs hundreds of parameters. Despite the name they are painted bright orange to make them easier to find, and they are built to survive severe impacts, fire and deep-water immersion."),
    ("Contrails", "Contrails form when hot, humid exhaust from jet engines mixes with cold air at high altitude and water vapour freezes into ice crystals. In dry air they vanish quickly, while in humid air they can persist and spread into cirrus-like clouds that trap heat."),
    ("The Wright brothers", "On 17 December 1903 at Kitty Hawk, North Carolina, Orville Wright made the first controlled, powered, sustained flight in a heavier-than-air machine, covering about 37 metres in twelve seconds. The brothers' key innovation was wing warping, which gave the pilot control over roll."),
], [
    ("What hue are an airliner's crash recorders really, despite their nickname?", [2]),
    ("why do the white streaks behind planes sometimes linger for hours", [3]),
])


# --------------------------------------------------------------------------
# Writing the files
# --------------------------------------------------------------------------
TEST_SLOTS = (2, 5, 8, 10)  # query index i goes to test when i % 11 is one of these


def build():
    corpus, queries, qrels, answers = [], [], {"train": [], "test": []}, []
    d = q = 0
    for topic, passages, qs in CLUSTERS:
        assert len(passages) == 5, topic
        ids = []
        for title, text in passages:
            d += 1
            ids.append("d%04d" % d)
            corpus.append({"_id": ids[-1], "title": title, "text": text})
        for text, rel in qs:
            qid = "q%03d" % (q + 1)
            split = "test" if q % 11 in TEST_SLOTS else "train"
            q += 1
            queries.append({"_id": qid, "text": text})
            for r in rel:
                qrels[split].append((qid, ids[r]))
            if split == "train":  # reader demo: the judged passages' titles stand in for answers
                answers.append({"_id": qid, "answers": [passages[r][0] for r in rel]})
    return corpus, queries, qrels, answers


def main():
    out = os.path.dirname(os.path.abspath(__file__))
    corpus, queries, qrels, answers = build()
    os.makedirs(os.path.join(out, "qrels"), exist_ok=True)
    for name, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries), ("answers.jsonl", answers)):
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    for split, rows in qrels.items():
        with open(os.path.join(out, "qrels", split + ".tsv"), "w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for qid, did in rows:
                f.write("%s\t%s\t1\n" % (qid, did))
    nq = {s: len({qid for qid, _ in rows}) for s, rows in qrels.items()}
    readme = [
        "# data/sample: small original BEIR-format retrieval sample",
        "",
        "Written for this project (original text, not taken from any dataset); license: Apache-2.0, same as the project.",
        "Regenerate with `python3 data/sample/make_sample.py` (all text lives in that script; output is deterministic).",
        "Counts: %d passages in corpus.jsonl, %d queries in queries.jsonl, %d train queries (%d qrels) and %d test queries (%d qrels)."
        % (len(corpus), len(queries), nq["train"], len(qrels["train"]), nq["test"], len(qrels["test"])),
        "The corpus is %d topic clusters of 5 passages (science, medicine, history, law, economics, cooking, sport, technology...);"
        " passages in a cluster share subject and vocabulary but state different facts, so they are hard negatives for each other."
        % len(CLUSTERS),
        "Some clusters (the Velmar River, the Calvessa Islands) describe invented places; other details are plausible but not authoritative.",
        "Each query paraphrases exactly one passage (two for a couple of queries), avoiding long word overlap, so BM25 is imperfect;"
        " some are deliberately hard, sharing more words with a same-cluster negative than with the answer.",
        "Split: query i (0-based) goes to test when i % 11 is in {2, 5, 8, 10}, else train; every query is in exactly one split.",
        "answers.jsonl (`_id`, `answers`) gives each of the %d train queries the title(s) of its judged passage(s) as its answer:"
        " the sample has no question-answer pairs, and the reader-teacher demo (configs/demo_reader.yaml) needs some."
        " They are derived from the train qrels, so a reader trained on them learns from relevance labels in disguise." % len(answers),
    ]
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(readme) + "\n")
    print("wrote %d passages, %d queries, train=%d test=%d" % (len(corpus), len(queries), nq["train"], nq["test"]))


if __name__ == "__main__":
    main()
